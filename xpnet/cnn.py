"""Convolutional networks of the first textbook: ``simple_cnn`` (chapter 7) and ``deep_cnn`` (chapter 8).

Both return a :class:`~xpnet.Sequential` with ``input_shape`` set, built like :func:`xpnet.mlp`:
He-initialised weights drawn on the host from ``numpy.random.default_rng(seed)`` (the same model
on every backend), the backend given by name or as a resolved :class:`~xpnet.Backend`.
"""

from __future__ import annotations

import math

from . import conv as K
from . import layers as L
from .backend import Backend
from .checks import as_rng, number_arg, size_arg
from .errors import ConfigError
from .losses import SoftmaxWithLoss
from .model import Sequential, _mlp_backend, _shape_arg

# deep_cnn's convolutions: (filters, pad) in order; a 2x2 max-pooling follows every second one
DEEP_CONVS = ((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))


def _image_shape(input_shape) -> tuple:
    shape = _shape_arg(input_shape)
    if shape is None or len(shape) != 3:
        raise ConfigError(f"input_shape must be (channels, height, width), e.g. (1, 28, 28), got {input_shape!r}")
    return shape


def _after(shape: tuple, size: int, stride: int, pad: int, what: str) -> tuple:
    c, h, w = shape
    if size > h + 2 * pad or size > w + 2 * pad:
        raise ConfigError(f"{what}: a {size}x{size} window does not fit its {h}x{w} input padded by {pad}; "
                          f"use larger images or smaller windows")
    return c, (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1


def simple_cnn(input_shape=(1, 28, 28), filters: int = 30, size: int = 5, stride: int = 1, pad: int = 0,
               hidden: int = 100, classes: int = 10, pool: int = 2, seed=0, backend: Backend | str | None = None,
               device: str | None = None, dtype: str | None = None) -> Sequential:
    """Convolution(filters, size x size) - ReLU - max-pooling (pool x pool, stride pool) - Affine(hidden) -
    ReLU - Affine(classes), Softmax-with-Loss: the textbook's SimpleConvNet (chapter 7)."""
    shape = _image_shape(input_shape)
    filters, size, hidden = size_arg("filters", filters), size_arg("size", size), size_arg("hidden", hidden)
    classes, pool = size_arg("classes", classes), size_arg("pool", pool)
    be = _mlp_backend(backend, device, dtype)
    rng = as_rng(seed)
    conv_out = (filters, *_after(shape, size, stride, pad, "simple_cnn's convolution")[1:])
    pooled = _after(conv_out, pool, pool, 0, "simple_cnn's pooling")
    layers = [K.Convolution.create(shape[0], filters, size, stride, pad, "he", rng, be), L.ReLU(),
              K.Pooling(pool, pool, pool), K.Flatten(),
              L.Affine.create(math.prod(pooled), hidden, "he", rng, be), L.ReLU(),
              L.Affine.create(hidden, classes, "he", rng, be)]
    return Sequential(layers, SoftmaxWithLoss(), input_shape=shape)


def deep_cnn(input_shape=(1, 28, 28), hidden: int = 50, classes: int = 10, dropout: float = 0.5, convs=DEEP_CONVS,
             seed=0, backend: Backend | str | None = None, device: str | None = None,
             dtype: str | None = None) -> Sequential:
    """Six 3x3 convolutions with ReLU, a 2x2 max-pooling after every second one, then Affine(hidden) -
    ReLU - Dropout - Affine(classes) - Dropout: the textbook's DeepConvNet (chapter 8). ``convs`` lists
    (filters, pad) per convolution (the book's: 16-16-32-32-64-64, pads 1,1,1,2,1,1)."""
    shape = _image_shape(input_shape)
    hidden, classes = size_arg("hidden", hidden), size_arg("classes", classes)
    dropout = number_arg("deep_cnn dropout", dropout)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"deep_cnn dropout must be in [0, 1), got {dropout}")
    convs = [(size_arg("convs filters", f), size_arg("convs pad", p, least=0)) for f, p in convs]
    be = _mlp_backend(backend, device, dtype)
    rng = as_rng(seed)
    layers: list = []
    now = shape
    for i, (filters, pad) in enumerate(convs):
        layers += [K.Convolution.create(now[0], filters, 3, 1, pad, "he", rng, be), L.ReLU()]
        now = (filters, *_after(now, 3, 1, pad, f"deep_cnn's convolution {i + 1}")[1:])
        if i % 2 == 1:
            layers.append(K.Pooling(2, 2, 2))
            now = _after(now, 2, 2, 0, f"deep_cnn's pooling {i // 2 + 1}")
    layers += [K.Flatten(), L.Affine.create(math.prod(now), hidden, "he", rng, be), L.ReLU()]
    if dropout:
        layers.append(L.Dropout(dropout, rng=rng.integers(2**31)))
    layers.append(L.Affine.create(hidden, classes, "he", rng, be))
    if dropout:
        layers.append(L.Dropout(dropout, rng=rng.integers(2**31)))
    return Sequential(layers, SoftmaxWithLoss(), input_shape=shape)
