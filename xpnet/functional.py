"""Plain functions that follow their input.

Each takes any Array API array and returns an array of the same namespace, device and
dtype (a torch tensor in, a torch tensor out; CuPy in, CuPy out). No backend switch is
needed. ``xp`` may be passed to skip the namespace lookup in a hot loop.

Scores ("logits") are the inputs of the last layer before the softmax: the functions that
take scores are stable for any finite value (no overflow in ``exp``, no ``log(0)``).
"""

from __future__ import annotations

from .backend import device, dtype_name, namespace, to_numpy
from .errors import DTypeError, LabelError, NonFiniteError, ShapeError

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
    return x.dtype


def logsumexp(x, axis: int = -1, keepdims: bool = False, xp=None):
    """``log(sum(exp(x)))`` along ``axis``, computed as ``m + log(sum(exp(x - m)))``."""
    xp = xp or namespace(x)
    m = xp.max(x, axis=axis, keepdims=True)
    out = m + xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else xp.squeeze(out, axis=axis)


def log_softmax(x, axis: int = -1, xp=None):
    """``x - logsumexp(x)``: log-probabilities, finite for any finite scores."""
    xp = xp or namespace(x)
    return x - logsumexp(x, axis=axis, keepdims=True, xp=xp)


def softmax(x, axis: int = -1, xp=None):
    """``exp(x - max) / sum(exp(x - max))``; softmax([3, 0, -3]) = (0.9503, 0.0473, 0.0024)."""
    xp = xp or namespace(x)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def sigmoid(x, xp=None):
    """``1 / (1 + exp(-x))`` without overflow for large ``|x|``."""
    xp = xp or namespace(x)
    e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(x, xp=None):
    """``log(1 + exp(x))`` = ``max(x, 0) + log1p(exp(-|x|))``, stable for any x."""
    xp = xp or namespace(x)
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


def relu(x, xp=None):
    """``max(x, 0)``."""
    xp = xp or namespace(x)
    return xp.maximum(x, 0.0)


def one_hot(t, num_classes: int, dtype=None, xp=None):
    """Integer labels of shape (N,) to an (N, num_classes) array of 0/1 in ``dtype``.

    ``dtype`` defaults to the namespace's default float. Labels outside
    ``[0, num_classes)`` give an all-zero row: validate first (:func:`check_labels`).
    """
    xp = xp or namespace(t)
    hit = t[..., None] == xp.arange(num_classes, dtype=t.dtype, device=device(t))
    return xp.astype(hit, dtype if dtype is not None else xp.float32)


def check_labels(t, num_classes: int, n: int | None = None, where: str = "labels", xp=None) -> None:
    """Raise :class:`LabelError` unless ``t`` holds valid targets for ``num_classes`` classes.

    Accepts integer labels of shape (N,) in ``[0, num_classes)`` or one-hot / probability
    rows of shape (N, num_classes) that sum to 1. ``n`` is the batch size they must match.
    Reads the values back to the host once (a device sync): done once per dataset, not
    per training step.
    """
    xp = xp or namespace(t)
    if n is not None and (t.ndim == 0 or t.shape[0] != n):
        raise LabelError(f"{where}: {t.shape[0] if t.ndim else 'a scalar'} labels given for a "
                         f"batch of {n}; expected one label per sample")
    if xp.isdtype(t.dtype, "integral"):
        if t.ndim != 1:
            raise LabelError(f"{where}: integer labels must have shape (N,), got {tuple(t.shape)}")
        if t.shape[0] == 0:
            return
        lo, hi = (int(v) for v in to_numpy(xp.stack([xp.min(t), xp.max(t)])))
        if lo < 0 or hi >= num_classes:
            raise LabelError(f"{where}: labels must lie in [0, {num_classes - 1}] for "
                             f"{num_classes} classes; got values from {lo} to {hi}")
        return
    if xp.isdtype(t.dtype, "bool"):
        raise LabelError(f"{where}: boolean labels given; use integer class indices "
                         f"(dtype int64) or one-hot float rows")
    if t.ndim == 1:
        raise LabelError(f"{where}: float labels of shape {tuple(t.shape)} given; class indices "
                         f"must be integers (xp.astype(t, xp.int64)) or one-hot rows (N, {num_classes})")
    if t.ndim != 2 or t.shape[1] != num_classes:
        raise LabelError(f"{where}: one-hot targets must have shape (N, {num_classes}), "
                         f"got {tuple(t.shape)}")
    sums = to_numpy(xp.sum(t, axis=-1))
    tmin = float(to_numpy(xp.min(t))) if t.shape[0] else 0.0
    tol = 1e-3 if t.dtype == xp.float32 else 1e-6
    if sums.size and (abs(sums - 1.0).max() > tol or tmin < 0):
        bad = int(abs(sums - 1.0).argmax())
        raise LabelError(f"{where}: one-hot rows must be non-negative and sum to 1; "
                         f"row {bad} sums to {float(sums[bad]):.6g}")


def targets_as_probabilities(t, num_classes: int, dtype, xp=None):
    """Integer labels (N,) become one-hot rows; (N, C) float targets are cast to ``dtype``."""
    xp = xp or namespace(t)
    if is_kind(t.dtype, "integral", xp):
        return one_hot(t, num_classes, dtype, xp=xp)
    return t if t.dtype == dtype else xp.astype(t, dtype)


def _as_batch(x, xp):
    return xp.expand_dims(x, axis=0) if x.ndim == 1 else x


def cross_entropy(scores, t, check: bool = True, xp=None):
    """Mean cross-entropy of softmax(scores) against targets ``t``.

    ``scores``: (N, C) logits (or (C,) for one sample). ``t``: integer labels (N,) or one-hot
    rows (N, C). Computed from log-softmax, so it is finite for any finite scores.
    ``check=False`` skips the validation of labels and of the scores' finiteness (a device
    sync); with it, bad targets raise :class:`LabelError` and NaN/inf scores :class:`NonFiniteError`.
    """
    xp = xp or namespace(scores)
    dtype = _float_dtype(scores, xp, "cross_entropy scores")
    if scores.ndim == 1:  # one sample, as in the textbook
        scores = _as_batch(scores, xp)
        t = xp.reshape(t, (1,)) if t.ndim == 0 else _as_batch(t, xp) if t.ndim == 1 and \
            not xp.isdtype(t.dtype, "integral") else t
    if scores.ndim != 2:
        raise ShapeError(f"cross_entropy: scores must have shape (N, C), got {tuple(scores.shape)}")
    if scores.shape[0] == 0:
        raise ShapeError("cross_entropy of an empty batch is undefined (scores of shape (0, C))")
    if check:
        check_labels(t, scores.shape[1], scores.shape[0], where="cross_entropy targets", xp=xp)
        if not bool(to_numpy(xp.all(xp.isfinite(scores)))):
            raise NonFiniteError("cross_entropy: the scores contain NaN or inf; the loss would be NaN")
    T = targets_as_probabilities(t, scores.shape[1], dtype, xp=xp)
    return -xp.sum(log_softmax(scores, xp=xp) * T) / scores.shape[0]


def accuracy(scores, t, xp=None):
    """Fraction of rows whose arg-max of ``scores`` equals the label (or the one-hot's arg-max).

    Returns a 0-d array of the scores' float dtype, on the scores' device.
    """
    xp = xp or namespace(scores)
    dtype = _float_dtype(scores, xp, "accuracy scores")
    scores = _as_batch(scores, xp)
    if scores.shape[0] == 0:
        raise ShapeError("accuracy of an empty batch is undefined (0 samples given)")
    pred = xp.argmax(scores, axis=-1)
    if t.ndim == 2:
        t = xp.argmax(t, axis=-1)
    elif t.ndim == 0:
        t = xp.reshape(t, (1,))
    return xp.mean(xp.astype(pred == xp.astype(t, pred.dtype), dtype))
