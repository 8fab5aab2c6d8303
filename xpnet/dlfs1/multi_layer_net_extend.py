"""The book's ``common/multi_layer_net_extend.py``: :class:`MultiLayerNet` with optional
Dropout and BatchNormalization (``use_dropout``, ``dropout_ration`` (the book's spelling),
``use_batchnorm``)."""

from __future__ import annotations

from collections import OrderedDict

from . import np
from .gradient import numerical_gradient
from .layers import Affine, BatchNormalization, Dropout, SoftmaxWithLoss
from .multi_layer_net import activation as _activation
from .multi_layer_net import weight_scale


class MultiLayerNetExtend:
    """Affine - [BatchNorm] - activation - [Dropout] - ... - Affine - SoftmaxWithLoss."""

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu", weight_init_std="relu",
                 weight_decay_lambda=0, use_dropout=False, dropout_ration=0.5, use_batchnorm=False):
        self.input_size, self.output_size = input_size, output_size
        self.hidden_size_list = list(hidden_size_list)
        self.hidden_layer_num = len(self.hidden_size_list)
        self.use_dropout, self.use_batchnorm = use_dropout, use_batchnorm
        self.weight_decay_lambda = weight_decay_lambda
        self.params = {}
        sizes = [input_size, *self.hidden_size_list, output_size]
        for idx in range(1, len(sizes)):
            scale = weight_scale(weight_init_std, sizes[idx - 1])
            self.params["W" + str(idx)] = scale * np.random.randn(sizes[idx - 1], sizes[idx])
            self.params["b" + str(idx)] = np.zeros(sizes[idx])
        act = _activation(activation)
        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 1):
            self.layers["Affine" + str(idx)] = Affine(self.params["W" + str(idx)], self.params["b" + str(idx)])
            if use_batchnorm:
                self.params["gamma" + str(idx)] = np.ones(sizes[idx])
                self.params["beta" + str(idx)] = np.zeros(sizes[idx])
                self.layers["BatchNorm" + str(idx)] = BatchNormalization(self.params["gamma" + str(idx)],
                                                                         self.params["beta" + str(idx)])
            self.layers["Activation_function" + str(idx)] = act()
            if use_dropout:
                self.layers["Dropout" + str(idx)] = Dropout(dropout_ration)
        idx = self.hidden_layer_num + 1
        self.layers["Affine" + str(idx)] = Affine(self.params["W" + str(idx)], self.params["b" + str(idx)])
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x, train_flg=False):
        for key, layer in self.layers.items():
            if "Dropout" in key or "BatchNorm" in key:
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t, train_flg=False):
        y = self.predict(x, train_flg)
        decay = 0.0
        if self.weight_decay_lambda:
            for idx in range(1, self.hidden_layer_num + 2):
                decay += 0.5 * self.weight_decay_lambda * np.sum(self.params["W" + str(idx)] ** 2)
        return self.last_layer.forward(y, t) + float(decay)

    def accuracy(self, X, T):
        Y = np.argmax(self.predict(X, train_flg=False), axis=1)
        if T.ndim != 1:
            T = np.argmax(T, axis=1)
        return float(np.sum(Y == np.asarray(T))) / float(X.shape[0])

    def numerical_gradient(self, X, T):
        def loss_W(W):
            return self.loss(X, T, train_flg=True)

        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            grads["W" + str(idx)] = numerical_gradient(loss_W, self.params["W" + str(idx)])
            grads["b" + str(idx)] = numerical_gradient(loss_W, self.params["b" + str(idx)])
            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                grads["gamma" + str(idx)] = numerical_gradient(loss_W, self.params["gamma" + str(idx)])
                grads["beta" + str(idx)] = numerical_gradient(loss_W, self.params["beta" + str(idx)])
        return grads

    def gradient(self, x, t):
        self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            layer = self.layers["Affine" + str(idx)]
            grads["W" + str(idx)] = layer.dW + self.weight_decay_lambda * self.params["W" + str(idx)]
            grads["b" + str(idx)] = layer.db
            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                grads["gamma" + str(idx)] = self.layers["BatchNorm" + str(idx)].dgamma
                grads["beta" + str(idx)] = self.layers["BatchNorm" + str(idx)].dbeta
        return grads
