"""The book's ``common/util.py``: ``smooth_curve``, ``shuffle_dataset``, ``conv_output_size``, and
``im2col`` / ``col2im`` from :mod:`xpnet.conv` when this xpnet has it."""

from __future__ import annotations

import numpy as _host

from ..backend import resolve
from . import np
from .arrays import _wrap
from .box import raw
from .layers import _conv, _need_conv


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """The (filter_h, filter_w) windows of (N, C, H, W) images as rows, (N*OH*OW, C*FH*FW):
    ``xpnet.conv.im2col`` on what ``np`` gives on the chosen backend."""
    _need_conv("im2col")
    be = resolve()
    return _wrap(_conv.im2col(raw(input_data, be), filter_h, filter_w, stride, pad), be)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """The adjoint of :func:`im2col`: rows added back into an ``input_shape`` array (overlaps add up)."""
    _need_conv("col2im")
    be = resolve()
    return _wrap(_conv.col2im(raw(col, be), input_shape, filter_h, filter_w, stride, pad), be)


def smooth_curve(x):
    """A loss curve smoothed by an 11-point Kaiser window (beta 2), for plotting; host NumPy."""
    x = _host.asarray(np.asnumpy(x) if hasattr(x, "shape") else [float(v) for v in x], dtype=float)
    window_len = 11
    s = _host.r_[x[window_len - 1:0:-1], x, x[-1:-window_len:-1]]
    w = _host.kaiser(window_len, 2)
    y = _host.convolve(w / w.sum(), s, mode="valid")
    return y[5:len(y) - 5]


def shuffle_dataset(x, t):
    """``x`` and ``t`` in one random order along the first axis (drawn from ``np.random``)."""
    permutation = np.random.permutation(x.shape[0])
    return x[permutation], t[permutation]


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    return (input_size + 2 * pad - filter_size) / stride + 1
