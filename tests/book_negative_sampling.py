"""A reader's chapter 4 file (the book's ``negative_sampling_layer.py``) written against xpnet's
facade: only the imports differ from a NumPy version. tests/test_dlfs2.py runs it on every backend
against the float64 reference, so the NumPy idioms it uses (a table filled element by element,
``np.power``, ``p /= p.sum()``, ``np.random.choice(..., p=p)`` with float32 probabilities, row
writes into an integer array, ``dh += ...`` starting from 0) are checked there."""

import collections

from xpnet.dlfs2.layers import Embedding, SigmoidWithLoss
from xpnet.dlfs2.np import *  # noqa: F403 (the book's form: gives np)


class EmbeddingDot:
    """Score of each row of ``h`` against the embedding of its word: ``sum(W[idx] * h, axis=1)``."""

    def __init__(self, W):
        self.embed = Embedding(W)
        self.params, self.grads = self.embed.params, self.embed.grads
        self.cache = None

    def forward(self, h, idx):
        rows = self.embed.forward(idx)
        self.cache = (h, rows)
        return np.sum(rows * h, axis=1)  # noqa: F405

    def backward(self, dout):
        h, rows = self.cache
        dout = dout.reshape(dout.shape[0], 1)
        self.embed.backward(dout * h)
        return dout * rows


class UnigramSampler:
    """Negatives drawn from the unigram distribution to the power ``power``, never the target."""

    def __init__(self, corpus, power, sample_size):
        self.sample_size = sample_size
        counts = collections.Counter(int(w) for w in corpus)
        self.vocab_size = len(counts)
        self.word_p = np.zeros(self.vocab_size)  # noqa: F405
        for word_id in range(self.vocab_size):
            self.word_p[word_id] = counts[word_id]
        self.word_p = np.power(self.word_p, power)  # noqa: F405
        self.word_p /= np.sum(self.word_p)  # noqa: F405

    def get_negative_sample(self, target):
        batch_size = target.shape[0]
        negative = np.zeros((batch_size, self.sample_size), dtype=np.int32)  # noqa: F405
        for i in range(batch_size):
            p = self.word_p.copy()
            p[target[i]] = 0
            p /= p.sum()
            negative[i, :] = np.random.choice(self.vocab_size, size=self.sample_size, replace=False, p=p)  # noqa: F405
        return negative


class NegativeSamplingLoss:
    """One SigmoidWithLoss for the target (label 1) and one per negative (label 0); the losses add."""

    def __init__(self, W, corpus, power=0.75, sample_size=5):
        self.sample_size = sample_size
        self.sampler = UnigramSampler(corpus, power, sample_size)
        self.loss_layers = [SigmoidWithLoss() for _ in range(sample_size + 1)]
        self.embed_dot_layers = [EmbeddingDot(W) for _ in range(sample_size + 1)]
        self.params, self.grads = [], []
        for layer in self.embed_dot_layers:
            self.params += layer.params
            self.grads += layer.grads
        self.negative = None

    def forward(self, h, target):
        n = target.shape[0]
        self.negative = self.sampler.get_negative_sample(target)
        score = self.embed_dot_layers[0].forward(h, target)
        loss = self.loss_layers[0].forward(score, np.ones(n, dtype=np.int32))  # noqa: F405
        zeros = np.zeros(n, dtype=np.int32)  # noqa: F405
        for i in range(self.sample_size):
            score = self.embed_dot_layers[1 + i].forward(h, self.negative[:, i])
            loss += self.loss_layers[1 + i].forward(score, zeros)
        return loss

    def backward(self, dout=1):
        dh = 0
        for loss_layer, dot_layer in zip(self.loss_layers, self.embed_dot_layers):
            dh += dot_layer.backward(loss_layer.backward(dout))
        return dh
