"""What the benchmark runs on: the machine, its best large-matmul rate, the libraries' threads."""

from __future__ import annotations

import importlib.util
import os
import platform
import time

import numpy as np


def matmul_rate(quick: bool = False) -> dict:
    """Best large-matmul rate (FLOP/s) of NumPy and, when installed, torch, float32."""
    n = 1024 if quick else 2048
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty_like(a)
    out = {}

    def best(fn, reps):
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 2.0 * n**3 / min(times)

    reps = 3 if quick else 7
    out["numpy"] = best(lambda: np.matmul(a, b, out=c), reps)
    if importlib.util.find_spec("torch") is not None:
        import torch

        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        out["torch"] = best(lambda: torch.matmul(ta, tb, out=tc), reps)
    out["best"] = max(out.values())
    out["n"] = n
    return out


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}
    for mod in ("torch", "jax", "dask", "array_api_strict", "cupy"):
        if importlib.util.find_spec(mod) is not None:
            try:
                info[mod] = __import__(mod).__version__
            except Exception as e:  # a broken install must not stop the benchmark
                info[mod] = f"unusable ({type(e).__name__})"
    return info


def set_threads(n: int) -> dict:
    """Use ``n`` threads in every library that is loaded (torch; BLAS via the environment)."""
    got = {"requested": n, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # only possible before torch's first parallel work
            pass
        got["torch"] = torch.get_num_threads()
    return got


