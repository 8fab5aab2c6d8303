"""Chapter 5 of "Deep Learning from Scratch 2" with its imports rewritten for xpnet: the simple
RNN language model (TimeEmbedding -> TimeRNN -> TimeAffine -> TimeSoftmaxWithLoss) trained with
the book's RnnlmTrainer on the first 1,000 words of an offline corpus (CPython's help texts;
the book uses PTB), on the backend XPNET_BACKEND chooses.

    XPNET_BACKEND=jax python examples/books/train_simple_rnnlm.py

XPNET_EXAMPLE_EPOCHS sets the epochs (the book trains 100).
"""

import os

from xpnet.datasets.text import pydoc_corpus
from xpnet.dlfs2.np import *  # noqa: F403 (the book's form: gives np)
from xpnet.dlfs2.optimizer import SGD
from xpnet.dlfs2.time_layers import TimeAffine, TimeEmbedding, TimeRNN, TimeSoftmaxWithLoss
from xpnet.dlfs2.trainer import RnnlmTrainer


class SimpleRnnlm:
    def __init__(self, vocab_size, wordvec_size, hidden_size):
        V, D, H = vocab_size, wordvec_size, hidden_size
        rn = np.random.randn  # noqa: F405

        # weights
        embed_W = (rn(V, D) / 100).astype("f")
        rnn_Wx = (rn(D, H) / np.sqrt(D)).astype("f")  # noqa: F405
        rnn_Wh = (rn(H, H) / np.sqrt(H)).astype("f")  # noqa: F405
        rnn_b = np.zeros(H).astype("f")  # noqa: F405
        affine_W = (rn(H, V) / np.sqrt(H)).astype("f")  # noqa: F405
        affine_b = np.zeros(V).astype("f")  # noqa: F405

        # layers
        self.layers = [
            TimeEmbedding(embed_W),
            TimeRNN(rnn_Wx, rnn_Wh, rnn_b, stateful=True),
            TimeAffine(affine_W, affine_b),
        ]
        self.loss_layer = TimeSoftmaxWithLoss()
        self.rnn_layer = self.layers[1]

        # every weight and gradient in one list each
        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, xs, ts):
        for layer in self.layers:
            xs = layer.forward(xs)
        loss = self.loss_layer.forward(xs, ts)
        return loss

    def backward(self, dout=1):
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def reset_state(self):
        self.rnn_layer.reset_state()


def main():
    batch_size, wordvec_size, hidden_size = 10, 100, 100
    time_size, lr = 5, 0.1
    max_epoch = int(os.environ.get("XPNET_EXAMPLE_EPOCHS", "100"))

    np.random.seed(0)  # noqa: F405
    corpus, word_to_id, id_to_word = pydoc_corpus(max_words=1000)
    vocab_size = int(max(corpus) + 1)
    xs = corpus[:-1]  # inputs
    ts = corpus[1:]  # targets: the next word

    model = SimpleRnnlm(vocab_size, wordvec_size, hidden_size)
    optimizer = SGD(lr)
    trainer = RnnlmTrainer(model, optimizer)
    trainer.fit(xs, ts, max_epoch, batch_size, time_size)
    print(f"vocabulary {vocab_size}, final perplexity {trainer.ppl_list[-1]:.2f}")


if __name__ == "__main__":
    main()
