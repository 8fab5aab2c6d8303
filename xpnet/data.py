"""Minibatches: the dataset stays on the device; only the shuffled index travels.

Each epoch the :class:`Loader` draws a permutation on the host from its own seeded
``numpy.random.Generator`` and gathers each batch on the device with
``xp.take(x, idx, axis=0)``, so every backend sees the same batches in the same order.
The generator's state is visible (``loader.rng_state``) so a checkpoint can resume the
exact shuffle sequence.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .backend import Backend, from_host_like, namespace
from .checks import is_int
from .errors import ConfigError, ShapeError


class Loader:
    """Iterate over ``(x_batch, t_batch)`` of arrays ``x`` and ``t`` already on the device.

    ``shuffle``: a fresh seeded permutation each epoch (else the stored order).
    ``drop_last``: skip the last batch when it is smaller than ``batch_size`` (by default it
    is yielded, smaller).
    """

    def __init__(
        self, x, t, batch_size: int = 64, shuffle: bool = True, seed: int = 0, drop_last: bool = False
    ):
        if not is_int(batch_size, 1):
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if x.ndim == 0 or t.ndim == 0:
            raise ShapeError(f"x and t need a sample axis; got shapes {tuple(x.shape)} and {tuple(t.shape)}")
        if x.shape[0] != t.shape[0]:
            raise ShapeError(f"{x.shape[0]} samples but {t.shape[0]} labels; expected one label per sample")
        if x.shape[0] == 0:
            raise ShapeError("the dataset is empty (0 samples)")
        if batch_size > x.shape[0]:
            raise ConfigError(f"batch_size {batch_size} is larger than the dataset's {x.shape[0]} "
                              f"samples; use a batch_size of at most {x.shape[0]}")
        self.x, self.t = x, t
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        try:
            self.rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"seed must be an integer >= 0 or a list of them, got {seed!r} ({e})") from None
        self.xp = namespace(x)

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[0])

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def order(self) -> np.ndarray:
        """The host index order of the next epoch (draws from the generator when shuffling)."""
        n = self.num_samples
        return self.rng.permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self) -> Iterator[tuple]:
        order = self.order()
        xp, b, n = self.xp, self.batch_size, self.num_samples
        idx_all = from_host_like(order.astype(np.int64), self.x)
        for k in range(len(self)):
            idx = idx_all[k * b : min((k + 1) * b, n)]
            yield xp.take(self.x, idx, axis=0), xp.take(self.t, idx, axis=0)

    # ------------------------------------------------------------------ resumable state
    @property
    def rng_state(self) -> dict:
        """The shuffle generator's state (JSON-friendly: plain ints and strings)."""
        return self.rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state: dict) -> None:
        try:
            self.rng.bit_generator.state = state
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(
                f"not a state of this loader's {type(self.rng.bit_generator).__name__} generator "
                f"({type(e).__name__}: {e}); pass what loader.rng_state returned"
            ) from None


def to_device(dataset, backend: Backend):
    """``(x_train, t_train, x_test, t_test)`` of a host :class:`~xpnet.datasets.Dataset` on ``backend``.

    Features take the backend's float dtype; labels are int64.
    """
    return (
        backend.asarray(dataset.x_train),
        backend.asarray(dataset.t_train.astype(np.int64)),
        backend.asarray(dataset.x_test),
        backend.asarray(dataset.t_test.astype(np.int64)),
    )
