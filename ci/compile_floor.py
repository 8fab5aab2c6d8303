"""How long XLA takes to compile one epoch of the default digits run: xpnet's compiled epoch
(the unchanged layers traced by ``JaxStep.epoch``) against the same epoch written directly in
jax (64-256-10 ReLU MLP, softmax cross-entropy, Adam, batch 64 over 1438 samples: 22 scanned
steps and a last batch of 30). Each measurement is a fresh process with the compile cache off,
1 thread, pinned to one core before it starts (``sched_setaffinity``: XLA's compiler threads
inherit it); the table gives the medians and each process's CPU seconds per wall second.

    python ci/compile_floor.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from xpnet.bench import cores  # noqa: E402

HAND_WRITTEN = r"""
import time, jax, jax.numpy as jnp
N, D, H, C, B = 1438, 64, 256, 10, 64
def loss_fn(p, x, t):
    h = jnp.maximum(x @ p[0] + p[2], 0)
    s = h @ p[1] + p[3]
    return jnp.mean(jax.nn.logsumexp(s, axis=1) - jnp.take_along_axis(s, t[:, None], 1)[:, 0])
def adam(p, m, v, g, k, lr):
    m = [0.9 * a + 0.1 * b for a, b in zip(m, g)]
    v = [0.999 * a + 0.001 * b * b for a, b in zip(v, g)]
    c = lr * jnp.sqrt(1 - 0.999 ** k) / (1 - 0.9 ** k)
    return [a - c * b / (jnp.sqrt(d) + 1e-7) for a, b, d in zip(p, m, v)], m, v
def epoch(p, m, v, k, x, t, order, lr):
    full = N // B
    def body(c, i):
        p, m, v, k = c
        loss, g = jax.value_and_grad(loss_fn)(p, x[i], t[i])
        p, m, v = adam(p, m, v, g, k + 1, lr)
        return (p, m, v, k + 1), loss
    (p, m, v, k), losses = jax.lax.scan(body, (p, m, v, k), order[: full * B].reshape(full, B))
    i = order[full * B:]
    loss, g = jax.value_and_grad(loss_fn)(p, x[i], t[i])
    p, m, v = adam(p, m, v, g, k + 1, lr)
    return p, m, v, k + 1, losses, loss
p = [jnp.zeros(s, jnp.float32) for s in [(D, H), (H, C), (H,), (C,)]]
args = (p, p, p, jnp.float32(0), jnp.zeros((N, D), jnp.float32), jnp.zeros(N, jnp.int32),
        jnp.arange(N, dtype=jnp.int32), jnp.float32(0.002))
t0 = time.perf_counter()
jax.jit(epoch, donate_argnums=(0, 1, 2)).lower(*args).compile()
print(time.perf_counter() - t0)
"""

XPNET = r"""
import numpy as np
import xpnet
from xpnet import datasets
be = xpnet.get_backend("jax", dtype="float32")
d = datasets.digits()
x, t = be.asarray(d.x_train.astype(np.float32)), be.asarray(d.t_train)
model = xpnet.mlp([64, 256, 10], seed=0, backend=be)
step = xpnet.compile_step(model, xpnet.Adam(lr=0.002))
step.epoch(x, t, np.arange(x.shape[0]), 64)
print(step.compile_seconds)
"""


def seconds(code: str, env: dict, cpus) -> tuple[float, float]:
    """The compile seconds the child prints, and the child's CPU seconds per wall second."""
    c0, t0 = cores.children_cpu(), time.perf_counter()
    with cores.children_pinned(cpus):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    ratio = (cores.children_cpu() - c0) / (time.perf_counter() - t0)
    if done.returncode != 0:
        raise SystemExit(f"compile_floor: a measurement failed: {done.stderr.strip()[-400:]}")
    return float(done.stdout.split()[-1]), ratio


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    env = {**os.environ, "XPNET_COMPILE_CACHE": "off", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    cpus = cores.choose(1)
    rows = {"xpnet JaxStep.epoch (the textbook layers traced)": XPNET,
            "the same epoch written directly in jax": HAND_WRITTEN}
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    for r in range(a.rounds):
        for name, code in rows.items():
            got[name].append(seconds(code, env, cpus))
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{v[-1][0]:.3f} s" for v in got.values()), file=sys.stderr)
    print(f"\nXLA compile of one digits epoch (64-256-10, Adam, batch 64), {a.rounds} rounds, 1 thread, "
          f"fresh processes pinned to core {cpus[0]}, cache off\n")
    print("| epoch | median compile s | min s | max s | process CPU s / wall s |\n|---|---:|---:|---:|---:|")
    for name, v in got.items():
        s = [x[0] for x in v]
        print(f"| {name} | {statistics.median(s):.3f} | {min(s):.3f} | {max(s):.3f} "
              f"| {max(x[1] for x in v):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
