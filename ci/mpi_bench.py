"""Samples/s of data-parallel training over MPI: W2 (784-1024-1024-10, float32, SGD) at global
batch 1,000 with 1 and 2 ranks, 1 BLAS thread per rank, in one run; the allreduce's share of
the step; whether the two runs end with the same weights.

    python ci/mpi_bench.py [--steps 12] [--warmup 2] [--backend jax] [--compile]

Each configuration is one ``mpiexec -n N`` job (its own process group, bounded by a timeout)
running this file with ``--worker``; each rank pins itself and every thread it has or starts to
one core of its own (rank r on the r-th core this job may use, ``sched_setaffinity``) before
it imports an array library, and reports its CPU seconds per wall second over the timed steps
(at most 1.0 on one core: no rank borrows a core, XLA's threads included): the textbook loop with
:class:`xpnet.parallel.DistributedOptimizer`, each rank on its slice of every global batch.
``--compile`` (jax): the step from :func:`xpnet.compile_step`, whole on 1 rank, as its compiled
``gradient`` and ``apply`` around the allreduce on 2 (XLA on one thread a rank).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = [784, 1024, 1024, 10]
BATCH = 1000


def pin_rank() -> list[int]:
    """Pin this rank (every thread) to one core: rank r on the r-th allowed core (wrapping)."""
    from xpnet.bench import cores

    rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    ok = cores.allowed()
    cpu = [ok[rank % len(ok)]]
    if cores.CAN_PIN:
        cores.pin_all(cpu)
    return cpu


def timed_steps(step, sync, batches, warmup, comm, opt):
    """Wall seconds and the CPU clock of the steps after ``warmup`` (all ranks start together)."""
    from xpnet.bench.cores import CpuClock

    for b in batches[:warmup]:
        step(*b)
    sync()
    if comm is not None:
        comm.barrier()
        opt.seconds = 0.0
    clock = CpuClock()
    t0 = time.perf_counter()
    with clock.timing():
        for b in batches[warmup:]:
            step(*b)
        sync()
    if comm is not None:
        comm.barrier()
    return time.perf_counter() - t0, clock


def worker(out: Path, steps: int, warmup: int, backend: str = "numpy", compile: bool = False) -> None:
    core = pin_rank()  # before jax or BLAS start threads: they inherit the mask
    import xpnet
    from xpnet import parallel

    comm = parallel.world()
    rank, size = (0, 1) if comm is None else (comm.rank, comm.size)
    rng = np.random.default_rng(0)
    n = BATCH * (steps + warmup)
    be = xpnet.get_backend(backend, dtype="float32")
    x = be.asarray(rng.standard_normal((n, SIZES[0]), dtype=np.float32))
    t = be.asarray(rng.integers(0, SIZES[-1], n))
    model = xpnet.mlp(SIZES, seed=0, backend=be)
    opt = xpnet.SGD(lr=0.01)
    compiled = xpnet.compile_step(model, opt) if compile else None
    if compiled is not None and not compiled.compiled:
        sys.exit(f"mpi_bench: --compile: {compiled.reason}; use --backend jax")
    if comm is not None:
        opt = parallel.DistributedOptimizer(opt, comm, apply=None if compiled is None else compiled.apply)
    batches = list(parallel.shards(n, BATCH, rank, size))

    def step(lo, hi, share):
        if compiled is not None and comm is None:
            compiled(x[lo:hi], t[lo:hi])
            return
        if compiled is not None:
            _, grads = compiled.gradient(x[lo:hi], t[lo:hi])
        else:
            model.loss(x[lo:hi], t[lo:hi], train=True, check=False)
            model.backward(input_grad=False)
            grads = model.grads
        if comm is None:
            opt.update(model.params, grads)
        else:
            opt.update(model.params, grads, share)

    def sync():  # jax runs asynchronously: the clock stops when the last update is done
        xpnet.to_numpy(next(iter(model.params.values())))

    seconds, clock = timed_steps(step, sync, batches, warmup, comm, opt)
    ratios = [clock.ratio] if comm is None else comm.comm.allgather(clock.ratio)
    cores_used = [core] if comm is None else comm.comm.allgather(core)
    alone = 0.0
    if comm is not None:
        comm.check_agree({"weights": model.params})  # raises on every rank if they drifted apart
        alone = allreduce_alone(comm, model.params)
    if rank == 0:
        np.savez(out / f"weights-{size}.npz", **{k: xpnet.to_numpy(v) for k, v in model.params.items()})
        allreduce = 0.0 if comm is None else opt.seconds
        (out / f"result-{size}.json").write_text(json.dumps({
            "ranks": size, "seconds": seconds, "samples_per_s": steps * BATCH / seconds,
            "allreduce_share": allreduce / seconds, "allreduce_alone_share": alone * steps / seconds,
            "allreduce_alone_ms": 1e3 * alone,
            "bytes_per_step": sum(int(np.prod(p.shape)) * 4 for p in model.params.values()),
            "cpu_per_wall": ratios, "cores": cores_used,
        }))


def allreduce_alone(comm, params) -> float:
    """Seconds of one allreduce of every parameter's size with all ranks ready (no waiting)."""
    buf = np.zeros(sum(int(np.prod(p.shape)) for p in params.values()), dtype=np.float32)
    alone = 0.0
    for _ in range(5):
        comm.barrier()
        a0 = time.perf_counter()
        comm.allreduce_(buf)
        alone += (time.perf_counter() - a0) / 5
    return alone


def run_job(ranks: int, out: Path, steps: int, warmup: int, timeout: float = 300, extra=()) -> dict:
    mpiexec = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    if mpiexec is None:
        sys.exit("mpi_bench: no mpiexec found; pip install 'xpnet[mpi]' mpich")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "mpi4py", __file__, "--worker", str(out),
           "--steps", str(steps), "--warmup", str(warmup), *extra]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        if proc.wait(timeout=timeout) != 0:
            sys.exit(f"mpi_bench: the {ranks}-rank job failed (exit status {proc.returncode})")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    return json.loads((out / f"result-{ranks}.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--backend", default="numpy", help="numpy (default) or another xpnet backend")
    p.add_argument("--compile", action="store_true", help="the compiled step (jax): see the module docstring")
    p.add_argument("--worker", metavar="OUT")
    args = p.parse_args()
    if args.worker:
        worker(Path(args.worker), args.steps, args.warmup, args.backend, args.compile)
        return
    extra = ["--backend", args.backend] + (["--compile"] if args.compile else [])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        one, two = (run_job(n, out, args.steps, args.warmup, extra=extra) for n in (1, 2))
        w1, w2 = (np.load(out / f"weights-{n}.npz") for n in (1, 2))
        diff = max(float(np.max(np.abs(w1[k] - w2[k]))) for k in w1.files)
    how = f"{args.backend}{' compiled' if args.compile else ''}"
    print(f"W2 {'-'.join(map(str, SIZES))} {how} float32 SGD, global batch {BATCH}, {args.steps} timed steps after "
          f"{args.warmup} warm-up, 1 BLAS thread per rank; allreduce of {one['bytes_per_step'] / 2**20:.2f} MiB "
          "per step; each rank pinned to its own core\n")
    print("| ranks | samples/s | speed-up | allreduce share of the step (with waiting) | allreduce alone "
          "| cores (one a rank) | CPU s / wall s a rank |")
    print("|---|---|---|---|---|---|---|")
    for r in (one, two):
        print(f"| {r['ranks']} | {r['samples_per_s']:,.0f} | {r['samples_per_s'] / one['samples_per_s']:.2f}x | "
              f"{100 * r['allreduce_share']:.1f} % | {r['allreduce_alone_ms']:.1f} ms "
              f"({100 * r['allreduce_alone_share']:.1f} %) | {', '.join(str(c[0]) for c in r['cores'])} "
              f"| {', '.join(f'{x:.2f}' for x in r['cpu_per_wall'])} |")
    print(f"\nweights after the run: the 2 ranks agree bitwise (checked); 1 rank vs 2 ranks differ by at most "
          f"{diff:.2e} (float32 sums in another order)")


if __name__ == "__main__":
    main()
