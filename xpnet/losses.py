"""Output layers with their loss: ``forward(x, t)`` gives the mean loss, ``backward()`` dx.

Each is stable for any finite scores (no overflow, no ``log(0)``) and its backward is the
textbook's closed form divided by the batch size N.

``forward(x, t, check=None)``: ``check=True`` validates the targets (a device sync),
``check=False`` skips that for data validated once already (the trainer's hot loop), and
``None`` takes the layer's ``check_labels`` (constructor argument, default True).
"""

from __future__ import annotations

from . import functional as F
from .backend import namespace, to_numpy
from .errors import CallOrderError, LabelError, NonFiniteError, ShapeError


class _Loss:
    """Shared: the ``check`` default, the cached ``y``/``t`` and the backward ``(y - t) / N``."""

    def __init__(self, check_labels: bool = True):
        self.check_labels = bool(check_labels)
        self.y = self.t = None

    def _checking(self, x, t, check) -> bool:
        check = self.check_labels if check is None else check
        if check:
            F.require_array(x, f"{type(self).__name__} scores")
            F.require_array(t, f"{type(self).__name__} targets", like=x)
        return check

    def backward(self, dout=1.0):
        if self.y is None:
            raise CallOrderError(f"{type(self).__name__}.backward() called before forward(x, t); "
                                 f"compute the loss first")
        return (self.y - self.t) * (dout / self.t.shape[0])


class SoftmaxWithLoss(_Loss):
    """Softmax then cross-entropy. ``t``: integer labels (N,) or one-hot rows (N, C).

    Forward: ``loss = -mean(sum(t * log_softmax(x)))``. Backward: ``(y - t) / N`` with
    ``y = softmax(x)`` (the gradient of cross-entropy through softmax).
    """

    def forward(self, x, t, check: bool | None = None):
        check = self._checking(x, t, check)
        xp = namespace(x)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ShapeError(f"SoftmaxWithLoss expects a non-empty batch of scores (N, C), got shape {tuple(x.shape)}")
        if check:
            F.check_labels(t, x.shape[1], x.shape[0], where="SoftmaxWithLoss labels", xp=xp)
        self.t = F.targets_as_probabilities(t, x.shape[1], x.dtype, xp=xp)
        loss, logp = F.softmax_cross_entropy(x, self.t, xp)
        self.y = xp.exp(logp)
        return loss


class SigmoidWithLoss(_Loss):
    """Sigmoid then binary cross-entropy, for targets ``t`` of the scores' shape (N, K) with
    values in [0, 1] (0/1 labels, or probabilities); for one column, (N,) targets too.

    Forward: ``loss = sum(softplus(x) - t * x) / N`` (= BCE of sigmoid(x), stable for any
    finite x). Backward: ``(sigmoid(x) - t) / N``.
    """

    def forward(self, x, t, check: bool | None = None):
        check = self._checking(x, t, check)
        xp = namespace(x)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ShapeError(f"SigmoidWithLoss expects a non-empty batch of scores (N, K), got shape {tuple(x.shape)}")
        if check:
            F.check_binary_labels(t, x.shape[0], width=x.shape[1], soft=True,
                                  where="SigmoidWithLoss targets", xp=xp)
        if t.shape != x.shape:
            if t.ndim == 1 and x.shape[1] == 1 and t.shape[0] == x.shape[0]:
                t = xp.reshape(t, x.shape)
            else:
                raise LabelError(f"SigmoidWithLoss: targets of shape {tuple(t.shape)} do not match "
                                 f"scores of shape {tuple(x.shape)}")
        self.t = xp.astype(t, x.dtype) if t.dtype != x.dtype else t
        self.y = F.sigmoid(x, xp=xp)
        return F.binary_cross_entropy(x, self.t, xp)


class MeanSquaredError(_Loss):
    """Identity output with ``loss = 0.5 * sum((x - t)^2) / N``; backward ``(x - t) / N``.

    ``check`` refuses targets that are not finite numbers.
    """

    def forward(self, x, t, check: bool | None = None):
        check = self._checking(x, t, check)
        xp = namespace(x)
        if t.shape != x.shape:
            raise LabelError(f"MeanSquaredError: targets of shape {tuple(t.shape)} do not match "
                             f"outputs of shape {tuple(x.shape)}")
        if x.ndim == 0 or x.shape[0] == 0:
            raise ShapeError(f"MeanSquaredError needs a non-empty batch (N, ...), got {tuple(x.shape)}")
        if check:
            if not (xp.isdtype(t.dtype, "real floating") or xp.isdtype(t.dtype, "integral")):
                raise LabelError(f"MeanSquaredError: targets must be numbers, got dtype {t.dtype}")
            if not bool(to_numpy(xp.all(xp.isfinite(t)))):
                raise NonFiniteError("MeanSquaredError: the targets contain NaN or inf")
        self.y, self.t = x, (xp.astype(t, x.dtype) if t.dtype != x.dtype else t)
        d = x - self.t
        return 0.5 * xp.sum(d * d) / x.shape[0]


LOSSES = {"softmax": SoftmaxWithLoss, "sigmoid": SigmoidWithLoss, "mse": MeanSquaredError}
