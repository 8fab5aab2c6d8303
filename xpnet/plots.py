"""Pictures of training: loss and accuracy curves, and decision regions of 2-D data.

matplotlib is an optional extra (``pip install 'xpnet[plot]'``); it is imported only when a
plot is drawn, with the non-interactive Agg canvas (no window, no display needed).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .backend import from_host_like, host_dtype, to_numpy
from .errors import XPNetError

INSTALL_HINT = "pip install 'xpnet[plot]' (or: pip install matplotlib)"


class PlotUnavailableError(XPNetError, ImportError):
    """matplotlib is not installed."""


def _figure(figsize):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotUnavailableError(
            f"plots need matplotlib, which is not installed; install it with: {INSTALL_HINT}"
        ) from e
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return write_atomic(path, buf.getvalue())


def plot_history(history, path, title: str | None = None) -> Path:
    """Loss (left) and accuracy (right) per epoch, train and test, saved as a PNG at ``path``."""
    fig = _figure((9, 3.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = history["epoch"]
    for part, style in (("train", "-"), ("test", "--")):
        loss, acc = history[f"{part}_loss"], history[f"{part}_acc"]
        if any(v is not None for v in loss):
            ax_loss.plot(epochs, loss, style, label=part)
        if any(v is not None for v in acc):
            ax_acc.plot(epochs, acc, style, label=part)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def decision_regions(model, x, resolution: int = 200, margin: float = 0.1):
    """``(xx, yy, classes)``: the predicted class on a grid covering 2-D points ``x`` (host arrays)."""
    x = np.asarray(x)
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    ref = model.reference_array
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(host_dtype(ref.dtype))
    scores = to_numpy(model.predict(from_host_like(grid, ref), train=False))
    classes = (scores[:, 0] > 0) if scores.shape[1] == 1 else scores.argmax(axis=1)  # one column: a binary logit
    return xx, yy, classes.astype(np.int64).reshape(xx.shape)


def plot_decision_regions(model, x, t, path, title: str | None = None, resolution: int = 200) -> Path:
    """The 2-D points ``x`` coloured by label ``t`` over the model's decision regions (PNG)."""
    x, t = np.asarray(x), np.asarray(t)
    if x.ndim != 2 or x.shape[1] != 2:
        raise XPNetError(f"decision regions need 2-D points of shape (N, 2), got shape {x.shape}")
    xx, yy, regions = decision_regions(model, x, resolution)
    fig = _figure((5, 5))
    ax = fig.subplots()
    ax.contourf(xx, yy, regions, alpha=0.3, levels=np.arange(regions.max() + 2) - 0.5, cmap="viridis")
    ax.scatter(x[:, 0], x[:, 1], c=t, s=14, cmap="viridis", edgecolors="k", linewidths=0.3)
    ax.set(xlabel="x1", ylabel="x2", title=title or "decision regions")
    fig.tight_layout()
    return _save(fig, path)
