"""Plain functions that follow their input.

Each takes any Array API array and returns an array of the same namespace, device and
dtype (a torch tensor in, a torch tensor out; CuPy in, CuPy out). No backend switch is
needed. ``xp`` may be passed to skip the namespace lookup in a hot loop.

Scores ("logits") are the inputs of the last layer before the softmax: the functions that
take scores are stable for any finite value (no overflow in ``exp``, no ``log(0)``). They
take float32 or float64 scores; float16 and bfloat16 raise :class:`DTypeError` (the
elementwise ``relu``, ``sigmoid`` and ``softplus`` follow any float dtype).
"""

from __future__ import annotations

import numpy as np

from .backend import (
    backend_name,
    check_float_dtype,
    check_same_backend,
    constant,
    device,
    dtype_name,
    namespace,
    to_numpy,
)
from .checks import is_array, is_int
from .errors import BackendMismatchError, DTypeError, LabelError, NonFiniteError, ShapeError

_kinds: dict = {}


def is_kind(dtype, kind: str, xp) -> bool:
    """``xp.isdtype(dtype, kind)``, remembered per (dtype, kind): NumPy's isdtype costs
    microseconds, too much to ask on every training step."""
    key = (type(dtype), kind, dtype)  # the type first: no cross-library dtype comparison
    hit = _kinds.get(key)
    if hit is None:
        hit = _kinds[key] = bool(xp.isdtype(dtype, kind))
    return hit


def _float_dtype(x, xp, where: str):
    if not xp.isdtype(x.dtype, "real floating"):
        raise DTypeError(f"{where} needs a floating-point array, got dtype {dtype_name(x.dtype)}; "
                         f"convert with xp.astype(x, xp.float32)")
    check_float_dtype(x.dtype, where, backend_name(x))
    return x.dtype


def _fmax(x, xp) -> float:
    """The largest finite value (``finfo.max``) of float array ``x``'s dtype, remembered per
    dtype (float32 and float64 only: see :func:`xpnet.backend.check_float_dtype`)."""
    dtype = x.dtype
    key = (type(dtype), "fmax", dtype)
    hit = _kinds.get(key)
    if hit is None:
        if not xp.isdtype(dtype, "real floating"):
            raise DTypeError(f"scores must be floating-point, got dtype {dtype_name(dtype)}; "
                             f"convert with xp.astype(x, xp.float32)")
        check_float_dtype(dtype, "scores", backend_name(x))
        hit = _kinds[key] = float(xp.finfo(dtype).max)
    return hit


def _raised(x, axis: int, xp, h: float | None = None):
    """``(xs, max(x))``: ``x`` raised to at least ``lo``, so that ``xs - max`` cannot overflow.

    ``x - max`` itself overflows for scores near both ends of the dtype's range
    (``-3e38 - 3e38`` in float32). ``lo = max(m, h - finfo.max) - h`` is at most ``m`` and at
    least ``-finfo.max``, and ``xs - m`` lies in ``[-h, 0]`` (``0 < h <= finfo.max / 2``; by
    default ``finfo.max / 2``); values below ``lo`` have ``exp(x - max) = 0`` either way, and
    every other value is unchanged. The bound ``h - finfo.max`` is a :func:`constant`: a
    Python float would make torch copy it to the device at every call.
    """
    m = xp.max(x, axis=axis, keepdims=True)
    fmax = _fmax(x, xp)
    h = 0.5 * fmax if h is None else h
    lo = xp.maximum(m, constant(h - fmax, m)) - h  # no overflow
    return xp.maximum(x, lo), m


def _lse(xs, m, axis: int, xp):
    return m + xp.log(xp.sum(xp.exp(xs - m), axis=axis, keepdims=True))


def logsumexp(x, axis: int = -1, keepdims: bool = False, xp=None):
    """``log(sum(exp(x)))`` along ``axis``, computed as ``m + log(sum(exp(x - m)))``."""
    xp = xp or namespace(x)
    out = _lse(*_raised(x, axis, xp), axis, xp)
    return out if keepdims else xp.squeeze(out, axis=axis)


def log_softmax(x, axis: int = -1, xp=None):
    """``x - logsumexp(x)``: log-probabilities, finite for any finite scores.

    A log-probability below about ``-finfo.max / 2`` (scores ``[3e38, -3e38]`` in float32)
    is given as about ``-finfo.max / 2``: its probability is 0 in the dtype either way.
    """
    xp = xp or namespace(x)
    xs, m = _raised(x, axis, xp)
    d = xs - m  # then minus log(sum): not x - (m + log(sum)), where log(2) vanishes beside m = 1e8
    return d - xp.log(xp.sum(xp.exp(d), axis=axis, keepdims=True))


def softmax(x, axis: int = -1, xp=None):
    """``exp(x - max) / sum(exp(x - max))``; softmax([3, 0, -3]) = (0.9503, 0.0473, 0.0024)."""
    xp = xp or namespace(x)
    xs, m = _raised(x, axis, xp)
    e = xp.exp(xs - m)
    return e / xp.sum(e, axis=axis, keepdims=True)


def softmax_cross_entropy(x, T, xp):
    """``(mean loss, log_softmax(x))`` of (N, C) scores against (N, C) target rows ``T``.

    Log-probabilities are finite, so no ``-inf * 0`` occurs; scores more than
    ``finfo.max / 2N`` below their row's maximum count as that far below (their probability
    is 0 either way), so no sample's loss exceeds about ``finfo.max / 2N`` and the sum of
    N cannot overflow: the loss is finite for any finite scores.
    """
    n = x.shape[0]
    xs, m = _raised(x, -1, xp, 0.5 * _fmax(x, xp) / n)
    d = xs - m  # then minus log(sum): not x - (m + log(sum)), where log(2) vanishes beside m = 1e8
    logp = d - xp.log(xp.sum(xp.exp(d), axis=-1, keepdims=True))
    return -xp.sum(logp * T) / n, logp


def binary_cross_entropy(x, T, xp):
    """Mean over the N rows of ``sum(softplus(x) - T x)`` (BCE of sigmoid(x)), each element
    clamped at ``finfo.max / 2 size`` so the sum cannot overflow for any finite ``x``."""
    size = 1
    for s in x.shape:
        size *= int(s)
    per = xp.minimum(softplus(x, xp=xp) - T * x, constant(_fmax(x, xp) / (2 * max(size, 1)), x))
    return xp.sum(per) / x.shape[0]


def sigmoid(x, xp=None):
    """``1 / (1 + exp(-x))`` without overflow for large ``|x|``."""
    xp = xp or namespace(x)
    e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(x, xp=None):
    """``log(1 + exp(x))`` = ``max(x, 0) + log1p(exp(-|x|))``, stable for any x."""
    xp = xp or namespace(x)
    return xp.maximum(x, constant(0.0, x)) + xp.log1p(xp.exp(-xp.abs(x)))


def relu(x, xp=None):
    """``max(x, 0)`` (NaN stays NaN). ``maximum`` with a kept zero (:func:`constant`): torch
    would copy a Python 0 to the device at every call, and ``where`` is about 9x slower than
    ``maximum`` on large NumPy arrays."""
    xp = xp or namespace(x)
    return xp.maximum(x, constant(0.0, x))


def one_hot(t, num_classes: int, dtype=None, xp=None):
    """Integer labels of shape (N,) to an (N, num_classes) array of 0/1 in ``dtype``.

    ``dtype`` defaults to the namespace's default float. Labels outside
    ``[0, num_classes)`` give an all-zero row: validate first (:func:`check_labels`).
    Any integer dtype gives the same rows (``uint8`` labels are not compared with a
    ``uint8`` range that would wrap past 255).
    """
    xp = xp or namespace(t)
    _num_classes(num_classes)
    if not is_kind(t.dtype, "integral", xp):
        raise LabelError(f"one_hot needs integer labels, got dtype {dtype_name(t.dtype)}; "
                         f"convert with xp.astype(t, xp.int64)")
    classes = xp.arange(num_classes, device=device(t))  # the default integer dtype
    if t.dtype != classes.dtype:
        t = xp.astype(t, classes.dtype)
    return xp.astype(t[..., None] == classes, dtype if dtype is not None else xp.float32)


def _num_classes(c) -> None:
    if not is_int(c, 1):
        raise LabelError(f"the number of classes must be an integer >= 1, got {c!r}")


def require_array(a, where: str, like=None) -> None:
    """Raise :class:`BackendMismatchError` unless ``a`` is an array (of ``like``'s library and
    device when ``like`` is given): a Python list or a scalar is not taken silently."""
    if not is_array(a):
        lib = f"{backend_name(like)} " if like is not None else ""
        raise BackendMismatchError(f"{where}: expected a {lib}array, got {type(a).__name__}; "
                                   f"convert it first, e.g. xpnet.get_backend().asarray(values)")
    if like is not None:
        check_same_backend(a, like, where)


def _count(t, n: int | None, where: str) -> None:
    if n is not None and (t.ndim == 0 or t.shape[0] != n):
        got = t.shape[0] if t.ndim else "a single (0-d)"
        raise LabelError(f"{where}: {got} labels given for a batch of {n}; expected one label "
                         f"per sample (labels are never broadcast)")


def _host_ints(t, xp):
    """``(min, max)`` of integer labels read back in one sync, whatever their integer dtype."""
    wide = xp.arange(1, device=device(t)).dtype  # torch has no min/max for uint16/32/64
    t = xp.astype(t, wide) if t.dtype != wide else t
    lo, hi = (int(v) for v in to_numpy(xp.stack([xp.min(t), xp.max(t)])))
    return lo, hi


def check_labels(t, num_classes: int, n: int | None = None, where: str = "labels", xp=None) -> None:
    """Raise :class:`LabelError` unless ``t`` holds valid targets for ``num_classes`` classes.

    Accepts integer labels of shape (N,) in ``[0, num_classes)`` (any integer dtype) or
    one-hot / probability rows of shape (N, num_classes) that are finite, non-negative and
    sum to 1. ``n`` is the batch size they must match. Reads the values back to the host
    once (a device sync): done once per dataset, not per training step.
    For one output column (binary logits) use :func:`check_binary_labels`.
    """
    require_array(t, where)
    _num_classes(num_classes)
    xp = xp or namespace(t)
    _count(t, n, where)
    if xp.isdtype(t.dtype, "integral"):
        if t.ndim != 1:
            raise LabelError(f"{where}: integer labels must have shape (N,), got {tuple(t.shape)}; "
                             f"flatten them with xp.reshape(t, (-1,))")
        if t.shape[0] == 0:
            return
        lo, hi = _host_ints(t, xp)
        if lo < 0 or hi >= num_classes:
            raise LabelError(f"{where}: labels must lie in [0, {num_classes - 1}] for "
                             f"{num_classes} classes; got values from {lo} to {hi}")
        return
    if xp.isdtype(t.dtype, "bool"):
        raise LabelError(f"{where}: boolean labels given; use integer class indices "
                         f"(dtype int64) or one-hot float rows")
    if not xp.isdtype(t.dtype, "real floating"):
        raise LabelError(f"{where}: labels of dtype {dtype_name(t.dtype)} given; use integer class "
                         f"indices (int64) or one-hot float rows")
    if t.ndim == 1:
        raise LabelError(f"{where}: float labels of shape {tuple(t.shape)} given; class indices "
                         f"must be integers (xp.astype(t, xp.int64)) or one-hot rows (N, {num_classes})")
    if t.ndim != 2 or t.shape[1] != num_classes:
        raise LabelError(f"{where}: one-hot targets must have shape (N, {num_classes}), "
                         f"got {tuple(t.shape)}")
    if t.shape[0] == 0:
        return
    sums = to_numpy(xp.concat([xp.sum(t, axis=-1), xp.reshape(xp.min(t), (1,))]))  # one sync
    sums, tmin = sums[:-1].astype(np.float64), float(sums[-1])
    tol = 1e-3 if dtype_name(t.dtype) == "float32" else 1e-6
    err = np.abs(sums - 1.0)
    if not (err.max() <= tol and tmin >= 0):  # NaN fails both comparisons
        bad = int(np.argmax(np.where(np.isfinite(err), err, np.inf)))
        raise LabelError(f"{where}: one-hot rows must be finite, non-negative and sum to 1; "
                         f"row {bad} sums to {float(sums[bad]):.6g} (smallest entry {tmin:.6g})")


def check_binary_labels(t, n: int | None = None, width: int = 1, soft: bool = False,
                        where: str = "labels", xp=None) -> None:
    """Raise :class:`LabelError` unless ``t`` holds 0/1 targets for ``width`` binary outputs.

    Accepts integers or floats of shape (N, width), or (N,) when ``width`` is 1. Integer
    targets must be 0 or 1; float targets must be exactly 0 or 1, or with ``soft=True``
    (probabilities, as the sigmoid loss takes) anything in [0, 1]. One device sync.
    """
    require_array(t, where)
    xp = xp or namespace(t)
    _count(t, n, where)
    shapes = "(N,) or (N, 1)" if width == 1 else f"(N, {width})"
    if t.ndim not in (1, 2) or (t.ndim == 1 and width != 1) or (t.ndim == 2 and t.shape[1] != width):
        raise LabelError(f"{where}: binary targets must have shape {shapes}, got {tuple(t.shape)}")
    if xp.isdtype(t.dtype, "bool"):
        raise LabelError(f"{where}: boolean targets given; use 0/1 integers (xp.astype(t, xp.int64))")
    integral = xp.isdtype(t.dtype, "integral")
    if not (integral or xp.isdtype(t.dtype, "real floating")):
        raise LabelError(f"{where}: targets of dtype {dtype_name(t.dtype)} given; use 0/1 integers or floats")
    if t.shape[0] == 0:
        return
    if integral:
        lo, hi = _host_ints(t, xp)
        if lo < 0 or hi > 1:
            raise LabelError(f"{where}: binary labels must be 0 or 1; got values from {lo} to {hi}")
        return
    other = xp.sum(xp.astype((t != 0.0) & (t != 1.0), t.dtype))
    lo, hi, other = (float(v) for v in to_numpy(xp.stack([xp.min(t), xp.max(t), other])))
    if not (lo >= 0 and hi <= 1):  # NaN fails too
        raise LabelError(f"{where}: binary targets must lie in [0, 1]; got values from {lo} to {hi}")
    if other and not soft:
        raise LabelError(f"{where}: {int(other)} target(s) are neither 0 nor 1; binary labels must "
                         f"be exactly 0 or 1 (round them, or use integers)")


def targets_as_probabilities(t, num_classes: int, dtype, xp=None):
    """Integer labels (N,) become one-hot rows; (N, C) float targets are cast to ``dtype``."""
    xp = xp or namespace(t)
    if is_kind(t.dtype, "integral", xp):
        return one_hot(t, num_classes, dtype, xp=xp)
    return t if t.dtype == dtype else xp.astype(t, dtype)


def _as_batch(x, xp):
    return xp.expand_dims(x, axis=0) if x.ndim == 1 else x


def _one_sample(scores, t, xp):
    """1-D scores (C,) are one sample: scores (1, C), labels as one row."""
    if scores.ndim != 1:
        return scores, t
    scores = _as_batch(scores, xp)
    if t.ndim == 0:
        return scores, xp.reshape(t, (1,))
    if t.ndim == 1 and t.shape[0] == scores.shape[1] and not xp.isdtype(t.dtype, "integral"):
        return scores, _as_batch(t, xp)  # a one-hot row
    return scores, t


def cross_entropy(scores, t, check: bool = True, xp=None):
    """Mean cross-entropy of softmax(scores) against targets ``t``.

    ``scores``: (N, C) logits (or (C,) for one sample). ``t``: integer labels (N,) or one-hot
    rows (N, C). Computed from log-softmax, so it is finite for any finite scores.
    ``check=False`` skips the validation of labels and of the scores' finiteness (a device
    sync); with it, bad targets raise :class:`LabelError` and NaN/inf scores :class:`NonFiniteError`.
    """
    require_array(scores, "cross_entropy scores")
    xp = xp or namespace(scores)
    dtype = _float_dtype(scores, xp, "cross_entropy scores")
    if check:
        require_array(t, "cross_entropy targets", like=scores)
    scores, t = _one_sample(scores, t, xp)
    if scores.ndim != 2:
        raise ShapeError(f"cross_entropy: scores must have shape (N, C), got {tuple(scores.shape)}")
    if scores.shape[0] == 0:
        raise ShapeError("cross_entropy of an empty batch is undefined (scores of shape (0, C))")
    if check:
        check_labels(t, scores.shape[1], scores.shape[0], where="cross_entropy targets", xp=xp)
        if not bool(to_numpy(xp.all(xp.isfinite(scores)))):
            raise NonFiniteError("cross_entropy: the scores contain NaN or inf; the loss would be NaN")
    T = targets_as_probabilities(t, scores.shape[1], dtype, xp=xp)
    return softmax_cross_entropy(scores, T, xp)[0]


def accuracy(scores, t, check: bool = True, xp=None):
    """Fraction of samples classified right, as a 0-d array of the scores' float dtype on
    their device.

    Scores with C >= 2 columns: the predicted class is each row's arg-max; ``t`` holds
    integer labels (N,) or one-hot rows (N, C). Scores with ONE column are binary logits
    (a sigmoid output): the predicted class is 1 where the score is > 0; ``t`` holds 0/1 as
    integers or floats of shape (N,) or (N, 1). 1-D scores (C,) are one sample.
    ``check=True`` validates the labels (:func:`check_labels` / :func:`check_binary_labels`,
    one device sync); ``check=False`` keeps it cheap for a loop over validated data. Either
    way one label per sample is required: labels are never broadcast.
    """
    require_array(scores, "accuracy scores")
    xp = xp or namespace(scores)
    dtype = _float_dtype(scores, xp, "accuracy scores")
    if check:
        require_array(t, "accuracy labels", like=scores)
    scores, t = _one_sample(scores, t, xp)
    if scores.ndim != 2:
        raise ShapeError(f"accuracy: scores must have shape (N, C), got {tuple(scores.shape)}")
    n, c = scores.shape
    if n == 0:
        raise ShapeError("accuracy of an empty batch is undefined (0 samples given)")
    if check:
        if c == 1:
            check_binary_labels(t, n, where="accuracy labels", xp=xp)
        else:
            check_labels(t, c, n, where="accuracy labels", xp=xp)
    else:  # shapes only (no sync): a (N, 1) label column would broadcast to (N, N)
        _count(t, n, "accuracy labels")
        if t.ndim > 2 or (t.ndim == 2 and t.shape[1] != c) or (t.ndim == 2 and c > 1 and
                                                              is_kind(t.dtype, "integral", xp)):
            raise LabelError(f"accuracy labels: shape {tuple(t.shape)} does not fit scores of shape "
                             f"{(n, c)}; expected (N,) labels or (N, {c}) rows")
    if c == 1:
        pred = scores[:, 0] > 0.0
        t = xp.reshape(t, (n,))
        hit = pred == ((t > 0.5) if is_kind(t.dtype, "real floating", xp) else (t != 0))
    else:
        pred = xp.argmax(scores, axis=-1)
        t = xp.argmax(t, axis=-1) if t.ndim == 2 else t
        hit = pred == (t if t.dtype == pred.dtype else xp.astype(t, pred.dtype))
    return xp.mean(xp.astype(hit, dtype))
