"""Chapter 1 of "Deep Learning from Scratch 2" with its imports rewritten for xpnet: a two-layer
network learns the spiral with the book's Trainer, on the backend XPNET_BACKEND chooses.

    XPNET_BACKEND=jax python examples/books/train_spiral.py

XPNET_EXAMPLE_EPOCHS sets the epochs (the book trains 300).
"""

import os

from xpnet.dlfs2.dataset import spiral
from xpnet.dlfs2.layers import Affine, Sigmoid, SoftmaxWithLoss
from xpnet.dlfs2.np import *  # noqa: F403 (the book's form: gives np)
from xpnet.dlfs2.optimizer import SGD
from xpnet.dlfs2.trainer import Trainer


class TwoLayerNet:
    def __init__(self, input_size, hidden_size, output_size):
        I, H, O = input_size, hidden_size, output_size  # noqa: E741 (the book's names)

        # weights and biases
        W1 = 0.01 * np.random.randn(I, H)  # noqa: F405
        b1 = np.zeros(H)  # noqa: F405
        W2 = 0.01 * np.random.randn(H, O)  # noqa: F405
        b2 = np.zeros(O)  # noqa: F405

        self.layers = [Affine(W1, b1), Sigmoid(), Affine(W2, b2)]
        self.loss_layer = SoftmaxWithLoss()

        # every weight and gradient in one list each
        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads

    def predict(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def forward(self, x, t):
        score = self.predict(x)
        loss = self.loss_layer.forward(score, t)
        return loss

    def backward(self, dout=1):
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout


def main():
    max_epoch = int(os.environ.get("XPNET_EXAMPLE_EPOCHS", "300"))
    batch_size, hidden_size, learning_rate = 30, 10, 1.0

    np.random.seed(0)  # noqa: F405 (the same network and shuffles on every backend)
    x, t = spiral.load_data()
    model = TwoLayerNet(input_size=2, hidden_size=hidden_size, output_size=3)
    optimizer = SGD(lr=learning_rate)

    trainer = Trainer(model, optimizer)
    trainer.fit(x, t, max_epoch, batch_size, eval_interval=10)

    score = model.predict(x)
    predict = np.argmax(score, axis=1)  # noqa: F405
    accuracy = float(np.mean(predict == np.argmax(t, axis=1)))  # noqa: F405
    print(f"final loss {trainer.loss_list[-1]:.4f}, training accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
