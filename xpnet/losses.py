"""Output layers with their loss: ``forward(x, t)`` gives the mean loss, ``backward()`` dx.

Each is stable for any finite scores (no overflow, no ``log(0)``) and its backward is the
textbook's closed form divided by the batch size N.
"""

from __future__ import annotations

from . import functional as F
from .backend import namespace, to_numpy
from .errors import LabelError, ShapeError


class SoftmaxWithLoss:
    """Softmax then cross-entropy. ``t``: integer labels (N,) or one-hot rows (N, C).

    Forward: ``loss = -mean(sum(t * log_softmax(x)))``. Backward: ``(y - t) / N`` with
    ``y = softmax(x)`` (the gradient of cross-entropy through softmax).
    ``check_labels=False`` skips the label-range check (a device sync) when the data
    were validated once already, as the trainer does.
    """

    def __init__(self, check_labels: bool = True):
        self.check_labels = check_labels
        self.y = self.t = None

    def forward(self, x, t, check: bool = True):
        xp = namespace(x)
        if x.ndim != 2:
            raise ShapeError(f"SoftmaxWithLoss expects scores of shape (N, C), got {tuple(x.shape)}")
        if check and self.check_labels:
            F.check_labels(t, x.shape[1], x.shape[0], where="SoftmaxWithLoss labels", xp=xp)
        logp = F.log_softmax(x, xp=xp)
        self.t = F.targets_as_probabilities(t, x.shape[1], x.dtype, xp=xp)
        self.y = xp.exp(logp)
        return -xp.sum(logp * self.t) / x.shape[0]

    def backward(self, dout=1.0):
        return (self.y - self.t) * (dout / self.t.shape[0])


class SigmoidWithLoss:
    """Sigmoid then binary cross-entropy, for targets ``t`` in {0, 1} of the scores' shape.

    Forward: ``loss = mean(softplus(x) - t * x)`` (= BCE of sigmoid(x), stable for any x).
    Backward: ``(sigmoid(x) - t) / N``.
    """

    def __init__(self, check_labels: bool = True):
        self.check_labels = check_labels
        self.y = self.t = None

    def forward(self, x, t, check: bool = True):
        xp = namespace(x)
        if t.shape != x.shape:
            if t.ndim == 1 and x.ndim == 2 and x.shape[1] == 1 and t.shape[0] == x.shape[0]:
                t = xp.reshape(t, x.shape)
            else:
                raise LabelError(f"SigmoidWithLoss: targets of shape {tuple(t.shape)} do not match "
                                 f"scores of shape {tuple(x.shape)}")
        if check and self.check_labels and t.shape[0]:
            lo, hi = (float(v) for v in to_numpy(xp.stack([xp.min(t), xp.max(t)])))  # one sync
            if lo < 0 or hi > 1:
                raise LabelError(f"SigmoidWithLoss: targets must lie in [0, 1], got values from {lo} to {hi}")
        self.t = xp.astype(t, x.dtype) if t.dtype != x.dtype else t
        self.y = F.sigmoid(x, xp=xp)
        return xp.sum(F.softplus(x, xp=xp) - self.t * x) / x.shape[0]

    def backward(self, dout=1.0):
        return (self.y - self.t) * (dout / self.t.shape[0])


class MeanSquaredError:
    """Identity output with ``loss = 0.5 * sum((x - t)^2) / N``; backward ``(x - t) / N``."""

    def __init__(self, check_labels: bool = True):
        self.y = self.t = None

    def forward(self, x, t, check: bool = True):
        xp = namespace(x)
        if t.shape != x.shape:
            raise LabelError(f"MeanSquaredError: targets of shape {tuple(t.shape)} do not match "
                             f"outputs of shape {tuple(x.shape)}")
        self.y, self.t = x, (xp.astype(t, x.dtype) if t.dtype != x.dtype else t)
        d = x - self.t
        return 0.5 * xp.sum(d * d) / x.shape[0]

    def backward(self, dout=1.0):
        return (self.y - self.t) * (dout / self.t.shape[0])


LOSSES = {"softmax": SoftmaxWithLoss, "sigmoid": SigmoidWithLoss, "mse": MeanSquaredError}
