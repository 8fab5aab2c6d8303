"""The benchmark's workloads: shapes, synthetic seeded data and the shared initial weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LR = 0.1


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    sizes: tuple[int, ...]
    n: int  # rows of the dataset (one epoch = n // batch steps)
    batch: int
    steps: int | None = None  # steps timed per repeat (None: the whole epoch)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch

    @property
    def timed_steps(self) -> int:
        return min(self.steps or self.steps_per_epoch, self.steps_per_epoch)

    def flops(self) -> float:
        """Matmul FLOPs of one step: forward, weight gradients, and input gradients of every
        layer but the first (the data need none)."""
        pairs = list(zip(self.sizes[:-1], self.sizes[1:], strict=True))
        per_row = sum(3 * 2 * i * o for i, o in pairs) - 2 * pairs[0][0] * pairs[0][1]
        return float(per_row * self.batch)

    def dataset_bytes(self) -> int:
        return self.n * self.sizes[0] * 4 + self.n * 8


WORKLOADS = {
    "W1": Workload("W1", "MNIST-shaped 784-100-10, batch 100", (784, 100, 10), 60_000, 100),
    "W2": Workload("W2", "GEMM-bound 784-1024-1024-10, batch 1000", (784, 1024, 1024, 10), 60_000, 1000, 12),
    "W3": Workload("W3", "latency-bound 64-100-10 (digits shape), batch 32", (64, 100, 10), 1_797, 32),
}


def quick_workload(w: Workload) -> Workload:
    """A few-second version: fewer rows and steps, same shapes."""
    n = min(w.n, w.batch * (2 if w.name == "W2" else 20))
    return Workload(w.name, w.title, w.sizes, n, w.batch, 1 if w.name == "W2" else None)


def make_data(w: Workload, seed: int = 0):
    """Synthetic float32 inputs in [0, 1) and int64 labels, seeded."""
    rng = np.random.default_rng(seed)
    X = rng.random((w.n, w.sizes[0]), dtype=np.float32)
    T = rng.integers(0, w.sizes[-1], size=w.n).astype(np.int64)
    return X, T


def init_weights(w: Workload, seed: int = 1):
    """He-initialised float32 weights and zero biases, the same for every contender."""
    rng = np.random.default_rng(seed)
    out = []
    for i, o in zip(w.sizes[:-1], w.sizes[1:], strict=True):
        W = (rng.standard_normal((i, o)) * np.sqrt(2.0 / i)).astype(np.float32)
        out.append((W, np.zeros(o, dtype=np.float32)))
    return out


