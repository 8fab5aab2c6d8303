"""Peak memory of one contender's epoch, measured in a fresh, pinned process."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

from .contenders import Contender, NumpyBuffers, NumpyTextbook, TorchNative, XPNet, XPNetOpsInlined
from .cores import children_pinned
from .workloads import WORKLOADS, Workload, make_data, quick_workload


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def memory_child(workload: str, contender: str, quick: bool) -> dict:
    """Run in a fresh process: peak RSS of one epoch of one contender above the baseline.

    The baseline is the resident size after imports and a warm-up on a tiny dataset (so
    library code and BLAS buffers are not counted). The peak (VmHWM, reset through
    /proc/self/clear_refs after the dataset is built) minus the baseline is the dataset plus
    everything the training loop allocates.
    """
    w = WORKLOADS[workload]
    if quick:
        w = quick_workload(w)
    tiny = Workload(w.name, w.title, w.sizes, w.batch * 3, w.batch, kind=w.kind, seq=w.seq)
    Xs, Ts = make_data(tiny)
    c = _make_one(contender, tiny, Xs, Ts)
    c.run(0, 3, 3)
    del c, Xs, Ts
    gc.collect()
    base = _status_kb("VmRSS")
    X, T = make_data(w)
    c = _make_one(contender, w, X, T)
    del X, T
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    c.run(0, w.timed_steps, w.steps_per_epoch)
    peak = _status_kb("VmHWM")
    return {"baseline_mb": base / 1024, "peak_above_baseline_mb": (peak - base) / 1024,
            "dataset_mb": w.dataset_bytes() / 2**20}


def _make_one(name: str, w, X, T) -> Contender:
    if w.kind == "cnn":
        from .convnet import NumpyConvTextbook, TorchConv, XPNetConv

        makers = {"numpy textbook": NumpyConvTextbook, "torch native": TorchConv}
        if name.startswith("xpnet["):
            return XPNetConv(w, X, T, name[6:-1])
        if name in makers:
            return makers[name](w, X, T)
        raise ValueError(f"unknown contender {name!r} for {w.name}")
    if name == "numpy textbook":
        return NumpyTextbook(w, X, T)
    if name == "numpy buffers":
        return NumpyBuffers(w, X, T)
    if name == "xpnet ops inlined":
        return XPNetOpsInlined(w, X, T)
    if name == "torch native":
        return TorchNative(w, X, T)
    if name.startswith("xpnet["):
        return XPNet(w, X, T, name[6:-1])
    raise ValueError(f"unknown contender {name!r}")


def memory_of(workload: str, contender: str, quick: bool, threads: int, cpus=None) -> dict:
    """:func:`memory_child` in a fresh process held to ``cpus`` with ``threads`` threads."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "xpnet.bench", "--_memory", workload, contender,
           "--threads", str(threads)] + (["--quick"] if quick else [])
    if cpus:
        cmd += ["--cpus", ",".join(map(str, cpus))]
    try:
        with children_pinned(cpus):
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
