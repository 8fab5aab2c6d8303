"""``xpnet bench``: the training step of xpnet against hand-written NumPy, PyTorch and the floor.

Five workloads, float32, synthetic seeded data, SGD with lr 0.1:

* **W1** MNIST-shaped: 60,000 x 784 inputs, 10 classes, MLP 784-100-10 (ReLU), batch 100, one epoch;
* **W2** GEMM-bound: 784-1024-1024-10, batch 1,000 (a sample of the epoch's steps, scaled up);
* **W3** latency-bound: 64-100-10 on the digits shape (1,797 x 64), batch 32, one epoch;
* **W4** the first book's SimpleConvNet step on 1x28x28 images (conv 30 x 5x5, ReLU, 2x2 max-pool,
  4320-100-10), batch 100, timed per 6,000 samples (:mod:`xpnet.bench.convnet`);
* **W5** the second book's LSTM language model step (vocabulary 10,000, 650-650, batch 20 x 35
  time steps), timed per 10 steps (:mod:`xpnet.bench.lstm`).

W4 and W5 have their own contenders (numpy textbook in the book's style, torch native, xpnet
eager on numpy and torch, xpnet[jax] compiled) and floor (convolution and matmul FLOPs); a row
this installation cannot build (no ``xpnet.conv`` / sequence layers, no torch or jax) reads
"not available" with the reason.

Contenders, all timed in the same process, interleaved (A B C A B C ...) after a warm-up;
the table gives the median of the repeats. The process and every thread in it are pinned to
``--threads`` cores (:mod:`xpnet.bench.cores`), and each row shows the CPU seconds per wall
second its timed runs used, so no contender gets a core it does not claim:

* ``xpnet[<backend>]`` for each installed backend (``model.gradient`` + ``SGD.update``);
* ``numpy textbook``: the step hand-written in NumPy the way the textbook writes it (fresh
  arrays every step, ``dx[arange(N), t] -= 1``, ``p -= lr * g``): the baseline of the ratios;
* ``numpy buffers``: the same arithmetic hand-written with every buffer reused (``out=``),
  the fewest NumPy calls we know for the step: the reference for xpnet's Python overhead;
* ``xpnet[jax] compiled step`` / ``compiled epoch``: the same step through
  :func:`xpnet.compile_step` (``jax.jit`` per step; one ``lax.scan`` over the timed steps);
* ``torch native``: ``nn.Linear``, ``F.cross_entropy``, ``optim.SGD``, autograd;
* on a GPU: ``xpnet[cupy]`` and ``xpnet[torch cuda:0]``, eager and ``CUDA graph step`` (the
  step captured once and replayed, :class:`xpnet.compile.GraphStep`), and ``torch native CUDA``;
* ``... README loop`` (W1, W3): a fresh shuffle each epoch and a gather each batch, as the
  README's loop trains: hand-written NumPy, xpnet[numpy], the jax compiled step, and the
  trainer's compiled epoch ``step.epoch`` (:mod:`xpnet.bench.loops`);
* the floor: the step's matmul FLOPs divided by the machine's measured large-matmul rate.

Every contender but the README-loop ones sees the same data: shuffled once, then contiguous
slices of ``batch`` rows (no per-step gather), so the timings compare the training step and
nothing else.

Run ``python -m xpnet.bench --help``. ``--quick`` runs in a few seconds (small data, few steps).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from .. import backend as B
from ..checks import size_arg
from ..errors import ConfigError
from .contenders import (
    Contender,
    NumpyBuffers,
    NumpyTextbook,
    TorchNative,
    XPNet,
    XPNetCompiled,
    XPNetOpsInlined,
    _sync_array,
)
from .cores import CAN_PIN, children_pinned, choose, parse_cpus, pinned
from .gpu import CudaTimer, gpu_makers, gpu_unavailable_reason, torch_cuda_available
from .loops import NumpyTextbookLoop, XPNetEpoch, XPNetLoop
from .machine import machine, matmul_rate, set_threads
from .measure import LOOP_WORKLOADS, SLOW_BACKENDS, contenders_for, measure
from .memory import memory_child, memory_of
from .report import notes, table, targets
from .workloads import LR, WORKLOADS, Workload, init_weights, make_data, quick_workload

__all__ = ["LR", "SLOW_BACKENDS", "WORKLOADS", "Contender", "CudaTimer", "NumpyBuffers", "NumpyTextbook",
           "NumpyTextbookLoop", "TorchNative", "Workload", "XPNet", "XPNetCompiled", "XPNetEpoch", "XPNetLoop",
           "XPNetOpsInlined", "_sync_array", "contenders_for", "gpu_makers", "gpu_unavailable_reason",
           "init_weights", "machine", "main", "make_data", "matmul_rate", "measure", "memory_child",
           "memory_of", "quick_workload", "run", "set_threads", "table", "targets", "torch_cuda_available"]


def positive_int(text: str) -> int:
    """argparse type: a positive integer (:func:`xpnet.checks.size_arg`)."""
    try:
        return size_arg("value", int(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None


def _backends(args) -> list[str]:
    if args.backends:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    elif args.quick:
        backends = [b for b in ("numpy", "torch") if B.installed(b)]
    else:
        backends = B.available()
    return [b for b in backends if b != "cupy"]  # cupy has the GPU table


def _workloads(args):
    for wname in args.workloads.split(","):
        w = WORKLOADS[wname.strip().upper()]
        yield quick_workload(w) if args.quick else w


def _cpu_section(args, result: dict, rate: dict) -> None:
    for w in _workloads(args):
        X, T = make_data(w)
        cs = contenders_for(w, X, T, result["backends"], False, result["errors"],
                            loops=w.name in LOOP_WORKLOADS)
        res = {"workload": w.title, "rows": w.n, "flops_per_step": w.flops(),
               "floor_epoch_s": w.flops() * w.steps_per_epoch / rate["best"],
               "timings": measure(w, cs, args.repeats, 1 if args.quick else 3, result["errors"])}
        del cs
        if args.memory and w.kind in ("mlp", "cnn"):
            names = ["numpy textbook", "xpnet[numpy]"] + (["torch native", "xpnet[torch]"]
                                                          if "torch" in result["backends"] else [])
            res["memory"] = {name: memory_of(w.name, name, args.quick, args.threads, args.cores)
                             for name in names}
        result["cpu"][w.name] = res
        if args.verbose:
            print(f"{w.name} done", file=sys.stderr)


def _gpu_section(args, result: dict) -> None:
    reason = gpu_unavailable_reason()
    makers = gpu_makers(reason is None, torch_cuda_available())
    if not makers:
        result["gpu_skipped"] = reason
        result["notes"].append(f"GPU table skipped: {reason}; torch sees no CUDA device either")
        return
    if reason is not None:
        result["notes"].append(f"no xpnet[cupy] row: {reason}")
    for w in _workloads(args):
        if w.kind != "mlp":
            continue  # the GPU table times the MLP workloads only
        X, T = make_data(w)
        cs = contenders_for(w, X, T, [], makers, result["errors"])
        result["gpu"][w.name] = {"workload": w.title, "timings": measure(
            w, cs, args.repeats, 1 if args.quick else 3, result["errors"])}
        del cs


def run(args) -> dict:
    """Measure every workload (CPU, then GPU where there is one); the results as a dict."""
    result: dict = {"machine": machine(), "threads": set_threads(args.threads), "quick": args.quick,
                    "repeats": args.repeats,
                    "pinned_to": list(args.cores) if args.cores and CAN_PIN else None,
                    "cpu": {}, "gpu": {}, "errors": {}, "notes": []}
    rate = matmul_rate(args.quick)
    result["matmul_flops"] = rate
    result["backends"] = _backends(args)
    _cpu_section(args, result, rate)
    _gpu_section(args, result)
    result["targets"] = targets(result["cpu"], result["gpu"] or None, args.threads)
    result["notes"] += notes(result, args, rate)
    return result


def _check_writable(p: argparse.ArgumentParser, flag: str, path: str | None) -> None:
    """Refuse an output file that cannot be written, before minutes of measuring."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        p.error(f"{flag} {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'bench' + flag[1:])}")
    if not os.path.isdir(folder):
        p.error(f"{flag} {path!r}: the folder {folder!r} does not exist; create it first (mkdir -p {folder})")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        p.error(f"{flag} {path!r}: cannot write in {folder!r} ({e.strerror}); pick another folder")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xpnet bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few-second run: small data, few steps")
    p.add_argument("--workloads", default="W1,W2,W3,W4,W5",
                   help="comma-separated: W1,W2,W3 (MLPs), W4 (ConvNet), W5 (LSTM language model)")
    p.add_argument("--backends", default=None,
                   help="xpnet backends to time (default: every installed one)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="interleaved repeats (default 7, quick 3)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads and cores for every library and contender (default: $XPNET_BENCH_THREADS or 1)")
    p.add_argument("--cpus", default=None,
                   help="the cores to pin to, one a thread, e.g. 1 or 0,1 (default: the last --threads allowed)")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                   help="hold the run to --threads cores (default); --no-pin shows what libraries take unheld")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                   help="measure peak memory in subprocesses (default: on, off with --quick)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--markdown", default=None, help="write the table to this markdown file")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--_memory", nargs=2, help=argparse.SUPPRESS)
    return p


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = _parser()
    args = p.parse_args(argv)
    bad = [w for w in args.workloads.split(",") if w.strip().upper() not in WORKLOADS]
    if bad:
        p.error(f"unknown workload(s) {bad}; valid: {', '.join(WORKLOADS)}")
    if args.backends is not None:
        names = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = [b for b in names if b not in B.BACKENDS]
        if unknown or not names:
            p.error(f"--backends {args.backends!r}: unknown backend(s) {unknown}; valid: {', '.join(B.BACKENDS)}")
    if args.threads is None:
        env = os.environ.get("XPNET_BENCH_THREADS", "").strip() or "1"
        try:
            args.threads = positive_int(env)
        except argparse.ArgumentTypeError as e:
            p.error(f"XPNET_BENCH_THREADS: {e}")
    try:
        cpus = None if args.cpus is None else parse_cpus(args.cpus)
        args.cores = choose(args.threads, cpus) if args.pin else None
    except ValueError as e:
        p.error(f"--cpus/--threads: {e}")
    _check_writable(p, "--json", args.json)
    _check_writable(p, "--markdown", args.markdown)
    return args


def _in_child(args, argv) -> int | None:
    """BLAS and XLA read their thread counts once, at import: measure in a child process that
    starts with the same count for every library, pinned before it runs anything. None when
    this process already is that child."""
    xla = f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'} " \
          f"intra_op_parallelism_threads={args.threads}"
    if os.environ.get("OPENBLAS_NUM_THREADS") == str(args.threads) and xla in os.environ.get("XLA_FLAGS", ""):
        return None
    n = str(args.threads)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
           "XPNET_BENCH_THREADS": n, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {xla}".strip()}
    argv = sys.argv[1:] if argv is None else list(argv)
    with children_pinned(args.cores):
        return subprocess.run([sys.executable, "-m", "xpnet.bench", *argv], env=env).returncode


def _report(args, result: dict) -> int:
    if args.json:  # the results first: a failure below must not lose minutes of measuring
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    try:
        text = table(result)
    except Exception as e:
        kept = args.json or "the JSON printed below"
        print(f"xpnet bench: error: the table could not be built ({type(e).__name__}: {e}); "
              f"the results are in {kept}", file=sys.stderr)
        if not args.json:
            print(json.dumps(result, indent=1, default=str))
        return 1
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (2 for bad flags, with a usage message)."""
    try:
        args = _parse(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    rc = _in_child(args, argv)
    if rc is not None:
        return rc
    if args._memory:
        with pinned(args.cores):
            set_threads(args.threads)
            print(json.dumps(memory_child(*args._memory, args.quick)))
        return 0
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.memory is None:
        args.memory = not args.quick
    with pinned(args.cores):
        result = run(args)
    return _report(args, result)
