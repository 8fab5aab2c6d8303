"""The book's ``common/multi_layer_net.py``: a fully connected network of any depth, built from
the book-form layers of :mod:`xpnet.dlfs1.layers` (xpnet's layers underneath)."""

from __future__ import annotations

import math
from collections import OrderedDict

from ..errors import ConfigError
from . import np
from .gradient import numerical_gradient
from .layers import Affine, Relu, Sigmoid, SoftmaxWithLoss

ACTIVATIONS = {"sigmoid": Sigmoid, "relu": Relu}


def weight_scale(weight_init_std, fan_in: int) -> float:
    """The std of the initial weights: 'relu'/'he' sqrt(2/n), 'sigmoid'/'xavier' sqrt(1/n), or a number."""
    if str(weight_init_std).lower() in ("relu", "he"):
        return math.sqrt(2.0 / fan_in)
    if str(weight_init_std).lower() in ("sigmoid", "xavier"):
        return math.sqrt(1.0 / fan_in)
    try:
        return float(weight_init_std)
    except (TypeError, ValueError):
        raise ConfigError(f"weight_init_std must be 'relu', 'he', 'sigmoid', 'xavier' or a number, "
                          f"got {weight_init_std!r}") from None


def activation(name: str):
    try:
        return ACTIVATIONS[str(name).lower()]
    except KeyError:
        raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}") from None


class MultiLayerNet:
    """Affine - activation - ... - Affine - SoftmaxWithLoss, with the book's arguments.

    ``params`` holds ``W1, b1, W2, ...`` (drawn from ``np.random``); ``weight_decay_lambda`` adds
    ``0.5 * lambda * sum(W**2)`` per weight to the loss and ``lambda * W`` to its gradient."""

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0):
        self.input_size, self.output_size = input_size, output_size
        self.hidden_size_list = list(hidden_size_list)
        self.hidden_layer_num = len(self.hidden_size_list)
        self.weight_decay_lambda = weight_decay_lambda
        self.params = {}
        self.__init_weight(weight_init_std)
        act = globals()["activation"](activation)
        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 1):
            self.layers["Affine" + str(idx)] = Affine(self.params["W" + str(idx)], self.params["b" + str(idx)])
            self.layers["Activation_function" + str(idx)] = act()
        idx = self.hidden_layer_num + 1
        self.layers["Affine" + str(idx)] = Affine(self.params["W" + str(idx)], self.params["b" + str(idx)])
        self.last_layer = SoftmaxWithLoss()

    def __init_weight(self, weight_init_std):
        sizes = [self.input_size, *self.hidden_size_list, self.output_size]
        for idx in range(1, len(sizes)):
            scale = weight_scale(weight_init_std, sizes[idx - 1])
            self.params["W" + str(idx)] = scale * np.random.randn(sizes[idx - 1], sizes[idx])
            self.params["b" + str(idx)] = np.zeros(sizes[idx])

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def _decay(self) -> float:
        if not self.weight_decay_lambda:
            return 0.0
        total = 0.0
        for idx in range(1, self.hidden_layer_num + 2):
            W = self.params["W" + str(idx)]
            total += 0.5 * self.weight_decay_lambda * np.sum(W ** 2)
        return float(total)  # one read from the device

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x), t) + self._decay()

    def accuracy(self, x, t):
        y = np.argmax(self.predict(x), axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        return float(np.sum(y == np.asarray(t))) / float(x.shape[0])

    def numerical_gradient(self, x, t):
        def loss_W(W):
            return self.loss(x, t)

        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            grads["W" + str(idx)] = numerical_gradient(loss_W, self.params["W" + str(idx)])
            grads["b" + str(idx)] = numerical_gradient(loss_W, self.params["b" + str(idx)])
        return grads

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            layer = self.layers["Affine" + str(idx)]
            grads["W" + str(idx)] = layer.dW + self.weight_decay_lambda * layer.W
            grads["b" + str(idx)] = layer.db
        return grads
