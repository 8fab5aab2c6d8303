"""The second book's ``common.trainer``: ``Trainer``, ``RnnlmTrainer`` and ``remove_duplicate``.

The loops and the printed lines are the book's, so a run can be held against its pages:
``| epoch 1 |  iter 1 / 10 | time 0[s] | loss 1.10`` and, for language models,
``| epoch 1 |  iter 1 / 19 | time 0[s] | perplexity 9999.29``. Shuffles come from the books'
``np.random`` (one seeded generator on the host): ``np.random.seed(0)`` fixes them on every
backend. ``plot()`` needs matplotlib (``pip install matplotlib``); without it, it says so.
"""

from __future__ import annotations

import math
import time

import numpy

from ..errors import ConfigError
from ..plots import INSTALL_HINT, PlotUnavailableError
from .arrays import is_box, np, raw, to_host
from .util import clip_grads

__all__ = ["RnnlmTrainer", "Trainer", "remove_duplicate"]


def _rows(x, idx):
    """Rows ``idx`` (host indices) of ``x``: host data on the host, device data on the device."""
    if isinstance(x, numpy.ndarray):
        return x[idx]
    return np.take(x, idx, axis=0)


def _check_fit(x, t, max_epoch, names=("x", "t")) -> None:
    for name, a in zip(names, (x, t)):
        if not hasattr(a, "shape") or len(a.shape) == 0:
            raise ConfigError(f"{name} must be an array with one row per sample, got {type(a).__name__}")
    if x.shape[0] != t.shape[0]:
        raise ConfigError(f"{names[0]} has {x.shape[0]} rows but {names[1]} has {t.shape[0]}; give one target per "
                          f"sample")
    if isinstance(max_epoch, bool) or not isinstance(max_epoch, int) or max_epoch < 0:
        raise ConfigError(f"max_epoch must be an integer >= 0, got {max_epoch!r}")


def _batches(data_size: int, batch_size, what: str) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    max_iters = data_size // batch_size
    if max_iters == 0:
        raise ConfigError(f"{what} of {data_size} is smaller than one batch of {batch_size}; use a smaller "
                          f"batch_size")
    return max_iters


def _step(model, optimizer, loss_args, max_grad):
    loss = model.forward(*loss_args)
    model.backward()
    params, grads, ties = _merged(model.params, model.grads)
    if max_grad is not None:
        clip_grads(grads, max_grad)
    optimizer.update(params, grads)
    for kept, tied in ties:  # weight tying on jax/dask: the transposed copy follows the update
        tied.data = raw(kept).T
    return loss


def _plot(values, eval_interval, ylabel, ylim, file_name):
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlotUnavailableError(f"plot() needs matplotlib, which is not installed; install it with: "
                                   f"{INSTALL_HINT}") from e
    if ylim is not None:
        plt.ylim(*ylim)
    plt.plot(numpy.arange(len(values)), values, label="train")
    plt.xlabel(f"iterations (x{eval_interval})")
    plt.ylabel(ylabel)
    if file_name is None:
        plt.show()
    else:
        plt.savefig(file_name)
        plt.close()


class Trainer:
    """Minibatch training of a model with ``forward(x, t)`` -> loss, ``backward()``, ``params``
    and ``grads``; the average loss every ``eval_interval`` iterations goes to ``loss_list``."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.loss_list: list[float] = []
        self.eval_interval = None
        self.current_epoch = 0

    def fit(self, x, t, max_epoch=10, batch_size=32, max_grad=None, eval_interval=20):
        _check_fit(x, t, max_epoch)
        data_size = x.shape[0]
        max_iters = _batches(data_size, batch_size, "a data set")
        self.eval_interval = eval_interval
        total_loss, loss_count = 0.0, 0
        start = time.time()
        for _ in range(max_epoch):
            idx = np.random.permutation(data_size)
            x, t = _rows(x, idx), _rows(t, idx)
            for iters in range(max_iters):
                sl = slice(iters * batch_size, (iters + 1) * batch_size)
                loss = _step(self.model, self.optimizer, (x[sl], t[sl]), max_grad)
                total_loss += raw(loss)
                loss_count += 1
                if eval_interval is not None and iters % eval_interval == 0:
                    avg = float(to_host(total_loss / loss_count))
                    print(f"| epoch {self.current_epoch + 1} |  iter {iters + 1} / {max_iters} | "
                          f"time {int(time.time() - start)}[s] | loss {avg:.2f}")
                    self.loss_list.append(avg)
                    total_loss, loss_count = 0.0, 0
            self.current_epoch += 1

    def plot(self, ylim=None, file_name=None):
        """The loss curve (shown, or saved to ``file_name``)."""
        _plot(self.loss_list, self.eval_interval, "loss", ylim, file_name)


class RnnlmTrainer:
    """Truncated-BPTT training of a language model on one long id sequence: batch row ``i`` reads
    from ``i * (len(xs) // batch_size)`` on, ``time_size`` words per step; perplexity
    ``exp(mean loss)`` every ``eval_interval`` iterations goes to ``ppl_list``."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.time_idx = None
        self.ppl_list = None
        self.eval_interval = None
        self.current_epoch = 0

    def get_batch(self, x, t, batch_size, time_size):
        """The next ``(batch_x, batch_t)`` (int32, (batch_size, time_size))."""
        data_size = x.shape[0]
        jump = data_size // batch_size
        pos = (numpy.arange(batch_size)[:, None] * jump + self.time_idx + numpy.arange(time_size)[None, :])
        pos %= data_size
        self.time_idx += time_size
        if isinstance(x, numpy.ndarray) and isinstance(t, numpy.ndarray):
            return x[pos].astype(numpy.int32), t[pos].astype(numpy.int32)
        flat = pos.reshape(-1)
        return (np.take(x, flat, axis=0).reshape((batch_size, time_size)),
                np.take(t, flat, axis=0).reshape((batch_size, time_size)))

    def fit(self, xs, ts, max_epoch=10, batch_size=20, time_size=35, max_grad=None, eval_interval=20):
        _check_fit(xs, ts, max_epoch, ("xs", "ts"))
        data_size = xs.shape[0]
        if isinstance(time_size, bool) or not isinstance(time_size, int) or time_size < 1:
            raise ConfigError(f"time_size must be a positive integer, got {time_size!r}")
        max_iters = _batches(data_size, batch_size * time_size, "a corpus")
        self.time_idx, self.ppl_list, self.eval_interval = 0, [], eval_interval
        total_loss, loss_count = 0.0, 0
        start = time.time()
        for _ in range(max_epoch):
            for iters in range(max_iters):
                batch_x, batch_t = self.get_batch(xs, ts, batch_size, time_size)
                total_loss += raw(_step(self.model, self.optimizer, (batch_x, batch_t), max_grad))
                loss_count += 1
                if eval_interval is not None and iters % eval_interval == 0:
                    ppl = math.exp(float(to_host(total_loss / loss_count)))
                    print(f"| epoch {self.current_epoch + 1} |  iter {iters + 1} / {max_iters} | "
                          f"time {int(time.time() - start)}[s] | perplexity {ppl:.2f}")
                    self.ppl_list.append(ppl)
                    total_loss, loss_count = 0.0, 0
            self.current_epoch += 1

    def plot(self, ylim=None, file_name=None):
        """The perplexity curve (shown, or saved to ``file_name``)."""
        _plot(self.ppl_list, self.eval_interval, "perplexity", ylim, file_name)


def _transposed_equal(a, b) -> bool:
    if a.ndim != 2 or b.ndim != 2 or tuple(a.shape)[::-1] != tuple(b.shape):
        return False
    return bool(np.all(a.T == b))


def _merged(params, grads):
    """:func:`remove_duplicate`, and the transposed ties whose copy must follow the update: pairs
    (kept parameter, tied box) where the tied one is a box (jax, dask) rather than a view."""
    params, grads, ties = list(params), list(grads), []
    found = True
    while found:
        found = False
        for i in range(len(params) - 1):
            for j in range(i + 1, len(params)):
                if params[i] is params[j]:
                    grads[i] += grads[j]
                elif _transposed_equal(params[i], params[j]):  # weight tying: W and W.T
                    grads[i] += grads[j].T
                    if is_box(params[j]):
                        ties.append((params[i], params[j]))
                else:
                    continue
                params.pop(j)
                grads.pop(j)
                found = True
                break
            if found:
                break
    return params, grads, ties


def remove_duplicate(params, grads):
    """The book's: parameters that appear twice (shared weights, or one the transpose of another:
    weight tying) kept once, their gradients added. New lists; the arrays are the model's."""
    params, grads, _ = _merged(params, grads)
    return params, grads
