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
    kind: str = "mlp"  # "mlp" (sizes: the layers), "cnn" (W4's ConvNet), "lstm" (W5's language model)
    seq: int = 0  # time steps per sequence ("lstm")

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch

    @property
    def timed_steps(self) -> int:
        return min(self.steps or self.steps_per_epoch, self.steps_per_epoch)

    def flops(self) -> float:
        """Matmul FLOPs of one step: forward, weight gradients, and input gradients of every
        layer but the first (the data need none). The convolution counts as its im2col matmul;
        the LSTM as its two gate matmuls a time step (the embedding below it needs its input
        gradient, the embedding itself is a gather: no FLOPs)."""
        if self.kind == "cnn":
            conv = 2 * CONV_OUT * CONV_OUT * CONV_C * CONV_K * CONV_K * CONV_FN  # per sample
            dense = sum(2 * i * o for i, o in zip(self.sizes[1:-1], self.sizes[2:], strict=True))
            return float((2 * conv + 3 * dense) * self.batch)
        if self.kind == "lstm":
            V, D, H, _ = self.sizes
            return float(3 * 2 * (D * 4 * H + H * 4 * H + H * V) * self.batch * self.seq)
        pairs = list(zip(self.sizes[:-1], self.sizes[1:], strict=True))
        per_row = sum(3 * 2 * i * o for i, o in pairs) - 2 * pairs[0][0] * pairs[0][1]
        return float(per_row * self.batch)

    def dataset_bytes(self) -> int:
        if self.kind == "lstm":
            return 2 * self.n * self.seq * 8
        return self.n * self.sizes[0] * 4 + self.n * 8


# W4's geometry (the first book's SimpleConvNet): 1x28x28 in, 30 filters 5x5 (stride 1, pad 0),
# ReLU, 2x2 max-pooling stride 2, Affine 4320 -> 100, ReLU, Affine 100 -> 10
CONV_C, CONV_HW, CONV_FN, CONV_K, POOL = 1, 28, 30, 5, 2
CONV_OUT = CONV_HW - CONV_K + 1  # 24
CONV_FLAT = CONV_FN * (CONV_OUT // POOL) ** 2  # 4320


WORKLOADS = {
    "W1": Workload("W1", "MNIST-shaped 784-100-10, batch 100", (784, 100, 10), 60_000, 100),
    "W2": Workload("W2", "GEMM-bound 784-1024-1024-10, batch 1000", (784, 1024, 1024, 10), 60_000, 1000, 12),
    "W3": Workload("W3", "latency-bound 64-100-10 (digits shape), batch 32", (64, 100, 10), 1_797, 32),
    # one "epoch" = 6,000 samples (60 steps); 20 timed a repeat
    "W4": Workload("W4", "ConvNet (conv 30x5x5, pool 2, 4320-100-10) on 1x28x28, batch 100, per 6,000 samples",
                   (CONV_C * CONV_HW * CONV_HW, CONV_FLAT, 100, 10), 6_000, 100, 20, kind="cnn"),
    # sizes: vocabulary, word vector, hidden, vocabulary; one "epoch" = 10 steps (7,000 tokens), 2 timed
    "W5": Workload("W5", "LSTM language model (vocab 10,000, 650-650), batch 20 x 35 steps, per 10 steps",
                   (10_000, 650, 650, 10_000), 200, 20, 2, kind="lstm", seq=35),
}


def quick_workload(w: Workload) -> Workload:
    """A few-second version: fewer rows and steps, same shapes (W5: smaller vocabulary and width)."""
    if w.kind == "cnn":
        return Workload(w.name, w.title, w.sizes, w.batch, w.batch, None, w.kind)
    if w.kind == "lstm":
        return Workload(w.name, w.title, (500, 32, 32, 500), w.batch * 3, w.batch, None, w.kind, w.seq)
    n = min(w.n, w.batch * (2 if w.name == "W2" else 20))
    return Workload(w.name, w.title, w.sizes, n, w.batch, 1 if w.name == "W2" else None)


def make_data(w: Workload, seed: int = 0):
    """Synthetic seeded data: float32 inputs in [0, 1) and int64 labels (W4: images of shape
    (n, 1, 28, 28)); for the language model int64 token ids and next-token targets, (n, seq)."""
    rng = np.random.default_rng(seed)
    if w.kind == "lstm":
        V = w.sizes[0]
        ids = rng.integers(0, V, size=(w.n, w.seq + 1)).astype(np.int64)
        return ids[:, :-1].copy(), ids[:, 1:].copy()
    if w.kind == "cnn":
        X = rng.random((w.n, CONV_C, CONV_HW, CONV_HW), dtype=np.float32)
        return X, rng.integers(0, w.sizes[-1], size=w.n).astype(np.int64)
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


