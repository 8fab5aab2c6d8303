"""Wall time of ``xpnet train`` on the bundled digits, numpy against jax, in one run: what
``time xpnet train --backend jax`` costs next to ``--backend numpy``, start-up and compiling
included.

    python ci/train_time.py [--rounds 5] [--threads 1] [--json FILE]

Each round runs, in turn: numpy; jax with an empty compile cache (a first run: every
executable compiled); jax with the cache the previous jax run filled (a later run); jax with
the cache off. Every run is a fresh process (its own process group, bounded by a timeout),
timed from start to exit; the table gives each configuration's median and its ratio to numpy's
median. BLAS and XLA are set to ``--threads`` threads, the same for every run, and every run
is held to that many cores: the child is pinned (``sched_setaffinity``) before it starts, so
XLA's threads, which use a second core despite the thread flags, inherit the mask. Each row
gives the runs' CPU seconds (the child's, from ``getrusage``) per wall second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from xpnet.bench import cores  # noqa: E402

CONFIGS = ("numpy", "jax, first run (empty cache)", "jax, later run (cache filled)", "jax, cache off")


def timed(args, env, cpus, timeout=300) -> tuple[float, float]:
    """Wall seconds and CPU seconds of one run of ``args`` pinned to ``cpus``."""
    c0 = cores.children_cpu()
    t0 = time.perf_counter()
    with cores.children_pinned(cpus):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    if proc.returncode != 0:
        raise SystemExit(f"train_time: {' '.join(map(str, args))} failed ({proc.returncode}): {err.strip()[-400:]}")
    return time.perf_counter() - t0, cores.children_cpu() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.rounds < 1 or a.threads < 1:
        ap.error("--rounds and --threads must be at least 1")
    try:
        cpus = cores.choose(a.threads)
    except ValueError as e:
        ap.error(str(e))
    n = str(a.threads)
    base = {**os.environ, "OPENBLAS_NUM_THREADS": n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if a.threads > 1 else 'false'} "
                         f"intra_op_parallelism_threads={n}"}
    base.pop("JAX_COMPILATION_CACHE_DIR", None)
    times: dict[str, list[float]] = {c: [] for c in CONFIGS}
    cpu: dict[str, list[float]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="xpnet-train-time-") as tmp:
        tmp = Path(tmp)
        for r in range(a.rounds):
            cache = tmp / f"cache-{r}"

            def train(backend, cache_value, name, r=r):
                out = tmp / f"{name}-{r}"
                args = [sys.executable, "-m", "xpnet", "train", "--backend", backend, "--out", str(out), "--quiet"]
                return timed(args, {**base, "XPNET_COMPILE_CACHE": cache_value}, cpus)

            for config, how in zip(CONFIGS, (("numpy", "off", "numpy"), ("jax", str(cache), "cold"),
                                             ("jax", str(cache), "warm"), ("jax", "off", "off")), strict=True):
                wall, used = train(*how)
                times[config].append(wall)
                cpu[config].append(used)
            shutil.rmtree(cache, ignore_errors=True)
            print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{times[c][-1]:.2f} s" for c in CONFIGS), flush=True)
    ref = statistics.median(times[CONFIGS[0]])
    rows = [(c, statistics.median(times[c]), min(times[c]), max(times[c]), sum(cpu[c]) / sum(times[c]))
            for c in CONFIGS]
    print(f"\n`xpnet train` on digits (40 epochs, plots included), {a.rounds} rounds, {a.threads} thread(s), "
          f"each run a fresh process pinned to core(s) {list(cpus)}\n")
    print("| configuration | median s | min s | max s | vs numpy | CPU s / wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for c, med, lo, hi, ratio in rows:
        print(f"| {c} | {med:.2f} | {lo:.2f} | {hi:.2f} | {med / ref:.2f}x | {ratio:.2f} |")
    if a.json:
        a.json.write_text(json.dumps({"threads": a.threads, "rounds": a.rounds, "cores": list(cpus),
                                      "seconds": times, "cpu_seconds": cpu}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
