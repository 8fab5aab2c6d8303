"""Chapter 7's simple convolutional network, in the book's style with its imports rewritten for
xpnet: conv - relu - pool - affine - relu - affine - softmax, the layers in an OrderedDict,
trained by the book's Trainer on the backend XPNET_BACKEND chooses.

    XPNET_BACKEND=jax python examples/books/simple_convnet.py

The book trains on MNIST (1x28x28) with 5x5 filters; this script uses xpnet's bundled 8x8 digits
as 1x8x8 images with 3x3 filters, and the first XPNET_EXAMPLE_SAMPLES training images (default
all). XPNET_EXAMPLE_EPOCHS sets the epochs (default 5).
"""

import os
from collections import OrderedDict

from xpnet.dlfs1 import np
from xpnet.dlfs1.dataset import load_digits
from xpnet.dlfs1.layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss
from xpnet.dlfs1.trainer import Trainer


class SimpleConvNet:
    """conv - relu - pool(2x2) - affine - relu - affine - softmax.

    input_dim: (channels, height, width); conv_param: filter_num, filter_size, pad, stride.
    """

    def __init__(self, input_dim=(1, 8, 8),
                 conv_param={"filter_num": 16, "filter_size": 3, "pad": 0, "stride": 1},  # noqa: B006 (the book's form)
                 hidden_size=50, output_size=10, weight_init_std=0.01):
        filter_num = conv_param["filter_num"]
        filter_size = conv_param["filter_size"]
        filter_pad = conv_param["pad"]
        filter_stride = conv_param["stride"]
        channels, input_size = input_dim[0], input_dim[1]
        conv_output_size = (input_size - filter_size + 2 * filter_pad) // filter_stride + 1
        pool_output_size = int(filter_num * (conv_output_size / 2) * (conv_output_size / 2))

        self.params = {}
        self.params["W1"] = weight_init_std * np.random.randn(filter_num, channels, filter_size, filter_size)
        self.params["b1"] = np.zeros(filter_num)
        self.params["W2"] = weight_init_std * np.random.randn(pool_output_size, hidden_size)
        self.params["b2"] = np.zeros(hidden_size)
        self.params["W3"] = weight_init_std * np.random.randn(hidden_size, output_size)
        self.params["b3"] = np.zeros(output_size)

        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(self.params["W1"], self.params["b1"], conv_param["stride"],
                                           conv_param["pad"])
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W3"], self.params["b3"])
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        y = self.predict(x)
        return self.last_layer.forward(y, t)

    def accuracy(self, x, t, batch_size=100):
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        acc = 0.0
        for i in range(int(x.shape[0] / batch_size)):
            tx = x[i * batch_size:(i + 1) * batch_size]
            tt = t[i * batch_size:(i + 1) * batch_size]
            y = np.argmax(self.predict(tx), axis=1)
            acc += float(np.sum(y == tt))  # a Python number: the same digits on every backend
        return acc / x.shape[0]

    def gradient(self, x, t):
        self.loss(x, t)

        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)

        grads = {}
        grads["W1"], grads["b1"] = self.layers["Conv1"].dW, self.layers["Conv1"].db
        grads["W2"], grads["b2"] = self.layers["Affine1"].dW, self.layers["Affine1"].db
        grads["W3"], grads["b3"] = self.layers["Affine2"].dW, self.layers["Affine2"].db
        return grads


def main():
    (x_train, t_train), (x_test, t_test) = load_digits(flatten=False)
    samples = int(os.environ.get("XPNET_EXAMPLE_SAMPLES", x_train.shape[0]))
    x_train, t_train = x_train[:samples], t_train[:samples]

    np.random.seed(0)
    network = SimpleConvNet(input_dim=(1, 8, 8),
                            conv_param={"filter_num": 16, "filter_size": 3, "pad": 0, "stride": 1},
                            hidden_size=50, output_size=10, weight_init_std=0.1)
    trainer = Trainer(network, x_train, t_train, x_test, t_test,
                      epochs=int(os.environ.get("XPNET_EXAMPLE_EPOCHS", 5)), mini_batch_size=100,
                      optimizer="Adam", optimizer_param={"lr": 0.01},
                      evaluate_sample_num_per_epoch=200)
    trainer.train()


if __name__ == "__main__":
    main()
