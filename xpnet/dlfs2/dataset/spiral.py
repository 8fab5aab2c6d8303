"""The book's spiral: ``x, t = spiral.load_data()``: 3 classes x 100 points, one-hot labels.

The points follow the book's construction (:func:`xpnet.datasets.make_spiral`), drawn from
``numpy.random.default_rng(seed)``: the same data on every run and backend, though not the
book's exact numbers (the book draws from NumPy's global generator).
"""

from __future__ import annotations

import numpy

from ...datasets import make_spiral

N, DIM, CLS_NUM = 100, 2, 3  # points per class, features, classes (the book's names)


def load_data(seed: int = 1984):
    """``x`` (300, 2) float64 and one-hot ``t`` (300, 3) int32, host NumPy arrays."""
    x, labels = make_spiral(N, CLS_NUM, 0.2, seed)
    t = numpy.zeros((x.shape[0], CLS_NUM), dtype=numpy.int32)
    t[numpy.arange(x.shape[0]), labels] = 1
    return x, t
