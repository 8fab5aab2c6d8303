"""Data-parallel training over MPI: ``mpiexec -n N xpnet train ...``.

Every rank holds the same model (rank 0's weights are broadcast at the start), takes its own
contiguous slice of each global batch, computes the gradient of its slice, and
:class:`DistributedOptimizer` sums ``share * gradient`` over the ranks with one allreduce of a
persistent flat buffer before the wrapped optimizer's ``update``: with ``share`` the rank's
number of samples over the global batch's, N ranks make the update one process makes on the
whole global batch. The layers, losses and optimizers never know about it::

    comm = parallel.world()                     # None when not started by an MPI launcher
    opt = parallel.DistributedOptimizer(xpnet.SGD(lr=0.1), comm)
    for lo, hi, share in parallel.shards(n, batch_size, comm.rank, comm.size): ...
        opt.update(model.params, model.grads, share)

How the buffer travels, per backend: NumPy, the buffer itself is passed to MPI; torch on the
CPU, MPI gets a zero-copy NumPy view of the flat tensor; CuPy, NCCL (``cupy.cuda.nccl``, its
unique id broadcast over MPI) reduces it on the GPU when NCCL is present, else it goes through
the host; jax, dask and array_api_strict go through the host (one copy each way per step).

With a compiled step (jax, :func:`xpnet.compile_step`) the allreduce sits between its two compiled
halves: ``loss, grads = step.gradient(x, t)`` on the rank's slice, then
``DistributedOptimizer(optimizer, comm, apply=step.apply).update(model.params, grads, share)``.

This is the only module that imports mpi4py, and only when :func:`world` finds an MPI launcher.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import zlib

import numpy as np

from .backend import from_host_like, host_dtype, to_numpy
from .errors import BackendNotInstalledError, ConfigError, XPNetError

# What MPI launchers put into each rank's environment: the job's size.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS", "PALS_SIZE")
OUTPUT_DRAIN_SECONDS = 0.5  # how long a rank lets the launcher pass its last message on before aborting
ABORT_GRACE_SECONDS = 1.0  # how long a rank other than 0 lets rank 0 report a shared error first


class RankMismatchError(XPNetError, RuntimeError):
    """Ranks whose weights or optimizer state differ where they must be equal."""


def launched_size() -> int:
    """The number of ranks an MPI launcher started, from the environment (1 when none)."""
    for var in SIZE_VARIABLES[:3]:  # the launchers' own variables; Slurm and PALS only with PMI
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


def mpi_info() -> dict:
    """What ``xpnet info`` says about MPI: mpi4py installed, the library, its version, the job size."""
    import importlib.util

    if importlib.util.find_spec("mpi4py") is None:
        return {"installed": False, "why": "mpi4py is not installed (pip install 'xpnet[mpi]' mpich)",
                "launched_size": launched_size()}
    from mpi4py import MPI

    info = {"installed": True, "mpi4py": __import__("mpi4py").__version__,
            "library": " ".join(MPI.Get_library_version().strip().splitlines()[0].split()),
            "standard": "{}.{}".format(*MPI.Get_version()), "size": MPI.COMM_WORLD.Get_size(),
            "rank": MPI.COMM_WORLD.Get_rank(),
            "nccl": _nccl_status()}
    return info


def _nccl_status() -> str:
    """How CuPy gradients are reduced here: 'nccl <version>', or why through the host."""
    try:
        from cupy.cuda import nccl
    except ImportError as e:
        return f"through the host (cupy.cuda.nccl not importable: {e})"
    except Exception as e:  # a broken CUDA install: say so, never fail `xpnet info`
        return f"through the host ({type(e).__name__}: {e})"
    if not getattr(nccl, "available", True):
        return "through the host (CuPy was built without NCCL)"
    return f"nccl {nccl.get_version()}"


def world() -> Communicator | None:
    """The MPI world of this job when an MPI launcher started more than one rank, else None.

    Raises :class:`~xpnet.errors.BackendNotInstalledError` when a launcher started several ranks
    but mpi4py is missing: the ranks would otherwise each train alone, unaware of the others."""
    size = launched_size()
    if size <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise BackendNotInstalledError(
            f"this process is one of {size} started by an MPI launcher, but mpi4py cannot be imported ({e}); "
            "install it with pip install 'xpnet[mpi]' (and an MPI: the mpich wheel, or your cluster's MPI)"
        ) from None
    comm = Communicator(MPI.COMM_WORLD)
    return comm if comm.size > 1 else None


def abort_launched(code: int) -> None:
    """End the whole MPI job from a rank that fails before it joins the others (a usage error on
    one rank only would leave them waiting in their first collective for ever); nothing when no
    launcher started several ranks, or mpi4py is missing."""
    if launched_size() <= 1:
        return
    try:
        from mpi4py import MPI
    except ImportError:
        return
    time.sleep(OUTPUT_DRAIN_SECONDS)  # let the launcher pass the message on first
    MPI.COMM_WORLD.Abort(code)
    os._exit(code)


def fingerprint(a) -> tuple | None:
    """``(shape, dtype, CRC32 of the bytes)`` of an array (None for None): what tells the ranks
    whether they were given the same data."""
    if a is None:
        return None
    host = np.ascontiguousarray(to_numpy(a))
    return tuple(host.shape), host.dtype.name, zlib.crc32(host.tobytes())


def shards(n: int, batch_size: int, rank: int, size: int):
    """``(lo, hi, share)`` per global batch of ``n`` samples in batches of ``batch_size``: this
    rank's contiguous slice ``order[lo:hi]`` and its weight ``(hi - lo) / global batch``.

    A full global batch gives each rank ``batch_size // size`` samples; the last, smaller one is
    split as evenly as contiguous slices allow (rank r: from ``r * b // size`` to
    ``(r + 1) * b // size``), so a rank may get none (``lo == hi``, share 0)."""
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        lo, hi = start + rank * b // size, start + (rank + 1) * b // size
        yield lo, hi, (hi - lo) / b


@contextlib.contextmanager
def batch_rows(model, lo: int, hi: int, total: int):
    """While this rank computes its rows ``lo:hi`` of a global batch of ``total``: the layers that
    draw random numbers per sample (Dropout's masks) draw the whole batch's and keep those rows
    (see :meth:`xpnet.Dropout.draw_mask`), so N ranks use the one mask one process draws. With no
    rows (``lo == hi``) the batch's masks are drawn all the same, and none kept: every rank's
    generators stay at the same point."""
    drawing = [layer for layer in model.layers if hasattr(layer, "rows") and hasattr(layer, "draw_mask")]
    for layer in drawing:
        layer.rows = (lo, hi, total)
    try:
        yield drawing
    finally:
        for layer in drawing:
            layer.rows = None


def draw_without_rows(model, sample, total: int) -> None:
    """Advance the mask generators as a step on a global batch of ``total`` rows would, for a rank
    holding none of them; ``sample`` (one training row, shape (1, ...)) gives each Dropout layer's
    input width through an evaluation forward (which draws nothing and changes no statistics)."""
    with batch_rows(model, 0, 0, total) as drawing:
        if not drawing:
            return
        x, widths = sample, {}
        for layer in model.layers:
            if layer in drawing:
                widths[id(layer)] = tuple(x.shape[1:])
            x = layer.forward(x, False)
        for layer in drawing:
            layer.draw_mask((0, *widths[id(layer)]), np.float64)


class Communicator:
    """An MPI communicator with what data-parallel training needs (``rank``, ``size``,
    ``local_rank``: the rank among those on this machine, which picks its GPU)."""

    def __init__(self, comm):
        from mpi4py import MPI

        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank = node.Get_rank()
        node.Free()

    def allreduce_(self, buf: np.ndarray) -> None:
        """Sum the contiguous host buffer ``buf`` over the ranks, in place (no copy)."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    def sum(self, values) -> np.ndarray:
        """The element-wise sum over the ranks of a small host vector (float64)."""
        buf = np.array(values, dtype=np.float64)
        self.allreduce_(buf)
        return buf

    def barrier(self) -> None:
        self.comm.Barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one (one 4-byte allreduce)."""
        buf = np.array([1 if flag else 0], dtype=np.int32)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.MAX)
        return bool(buf[0])

    def min(self, value: int) -> int:
        """The smallest of the ranks' integers, on every rank (one 8-byte allreduce)."""
        buf = np.array([value], dtype=np.int64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.MIN)
        return int(buf[0])

    def broadcast_(self, arrays: dict) -> None:
        """Replace every array of the mapping ``arrays`` with rank 0's (same keys on every rank)."""
        for key in list(arrays):
            a = arrays[key]
            host = np.array(to_numpy(a), order="C", copy=True)  # writeable (jax hands out read-only views)
            self.comm.Bcast(host, root=0)
            arrays[key] = from_host_like(host, a)

    def average_(self, arrays: dict) -> None:
        """Replace every array of the mapping ``arrays`` with its mean over the ranks (for the
        running statistics each rank's BatchNormalization gathers from its own slices)."""
        for key in list(arrays):
            a = arrays[key]
            host = np.array(to_numpy(a), order="C", copy=True)
            self.allreduce_(host)
            arrays[key] = from_host_like(host / self.size, a)

    def agree(self, values: dict, what: str = "run") -> None:
        """Raise :class:`RankMismatchError` on every rank unless every rank holds the same
        ``values`` (small, picklable: settings, shapes, checksums), naming each rank that differs
        from rank 0 and in what. One allgather."""
        every = self.comm.allgather(values)
        ours = every[0]
        diffs = []
        for r, theirs in enumerate(every[1:], 1):
            keys = [k for k in ours if theirs.get(k) != ours[k]] + [k for k in theirs if k not in ours]
            if keys:
                diffs.append(f"rank {r} has " + "; ".join(f"{k} {theirs.get(k)!r} where rank 0 has {ours.get(k)!r}"
                                                           for k in keys))
        if diffs:
            raise RankMismatchError(
                f"the {self.size} MPI ranks were not started on the same {what}: " + ". ".join(diffs)
                + ". Every rank must train one model on the same data with the same options: start them all "
                "with one command line (mpiexec -n N xpnet train ...) on the same files"
            )

    def check_agree(self, groups: dict) -> None:
        """Raise :class:`RankMismatchError` on every rank when the arrays in ``groups`` (a name ->
        mapping of arrays, e.g. ``{"params": model.params}``) are not bitwise equal on all ranks:
        one CRC32 per group, gathered (a few bytes per rank)."""
        mine = [zlib.crc32(b"".join(np.ascontiguousarray(to_numpy(a)).tobytes() for a in arrays.values()))
                for arrays in groups.values()]
        every = self.comm.allgather(mine)
        bad = [(r, name) for r, sums in enumerate(every) for name, s, s0 in zip(groups, sums, every[0]) if s != s0]
        if bad:
            which = ", ".join(f"rank {r} ({name})" for r, name in bad)
            raise RankMismatchError(
                f"the {self.size} ranks no longer hold the same model: {which} {'does' if len(bad) == 1 else 'do'} "
                "not match rank 0. Every rank "
                "must apply the same update; a layer drawing its own random numbers or code changing one rank's "
                "weights causes this. Resume from the last checkpoint"
            )

    def abort(self, message: str, code: int = 1) -> None:
        """End every rank of the job: print ``message`` (rank 0 at once; another rank after a short
        grace, so a shared error is printed once, by rank 0), then ``MPI_Abort``."""
        if self.rank != 0:
            time.sleep(ABORT_GRACE_SECONDS)
            message = f"[rank {self.rank} of {self.size}] {message}"
        print(message, file=sys.stderr, flush=True)
        # the launcher forwards a rank's output through its own pipes: give it a moment to pass
        # the message on before MPI_Abort has the launcher end every process
        time.sleep(OUTPUT_DRAIN_SECONDS)
        self.comm.Abort(code)
        os._exit(code)  # MPICH's MPI_Abort may return before the launcher ends the job


class DistributedOptimizer:
    """``optimizer`` whose ``update(params, grads, share)`` first replaces the gradients by their
    share-weighted sum over the ranks (one allreduce of one flat buffer, allocated once), then
    runs ``optimizer.update``, or ``apply(reduced_grads)`` when ``apply`` is given (a compiled
    update: ``xpnet.compile_step(model, optimizer).apply``). Every other attribute is the wrapped
    optimizer's.

    ``share``: this rank's samples over the global batch's (default ``1 / size``: equal slices);
    ``grads=None`` with ``share=0`` for a rank with no samples in this batch. ``seconds``: the
    time spent in the allreduce so far (for the benchmark)."""

    def __init__(self, optimizer, comm: Communicator, apply=None):
        if apply is not None and not callable(apply):
            raise ConfigError(f"apply must be a function of the reduced gradients (e.g. a compiled step's apply), "
                              f"got {type(apply).__name__}")
        self.optimizer, self.comm, self.apply = optimizer, comm, apply
        self._flat = None  # (pack, reduce, views) made for the first params seen
        self.seconds = 0.0

    def __getattr__(self, name):
        return getattr(self.optimizer, name)

    def update(self, params, grads, share: float | None = None) -> None:
        items = list(params.items())
        if self._flat is None:
            self._flat = _flat_buffer(items, self.comm)
        pack, reduce, views = self._flat
        if grads is not None:
            self.optimizer.check_grads(items, grads)  # named errors before anything moves
        pack(grads, 1.0 / self.comm.size if share is None else float(share))
        t0 = time.perf_counter()
        reduce()
        self.seconds += time.perf_counter() - t0
        reduced = views(dict(items))
        if self.apply is None:
            self.optimizer.update(params, reduced)
        else:
            self.apply(reduced)


def _flat_buffer(items, comm: Communicator):
    """``(pack(grads, share), reduce(), views(params))`` over one flat buffer for the arrays
    ``items``; ``views`` gives the reduced gradients as arrays like the current ``params`` (a
    compiled update replaces, and donates, the arrays it was made for)."""
    import array_api_compat as compat

    ref = items[0][1]
    shapes = [(k, tuple(p.shape)) for k, p in items]
    bounds = np.cumsum([0] + [int(np.prod(s)) for _, s in shapes])
    total = int(bounds[-1])

    def split(flat):
        return {k: flat[bounds[i]:bounds[i + 1]].reshape(s) for i, (k, s) in enumerate(shapes)}

    if compat.is_numpy_array(ref) or (compat.is_torch_array(ref) and ref.device.type == "cpu"):
        if compat.is_numpy_array(ref):
            flat = host = np.empty(total, dtype=ref.dtype)
            mul = np.multiply
        else:
            import torch

            flat = torch.empty(total, dtype=ref.dtype)
            host, mul = flat.numpy(), torch.mul  # a view: MPI reads and writes the tensor's memory
        views = split(flat)

        def pack(grads, share):
            if grads is None:
                flat.fill(0) if isinstance(flat, np.ndarray) else flat.zero_()
                return
            for k, v in views.items():
                mul(grads[k], share, out=v)

        return pack, lambda: comm.allreduce_(host), lambda params: views
    if compat.is_cupy_array(ref) and _nccl_status().startswith("nccl"):
        return _nccl_buffer(ref, total, split, comm)
    host = np.empty(total, dtype=host_dtype(ref.dtype))
    host_views = split(host)

    def pack(grads, share):
        if grads is None:
            host.fill(0)
            return
        for k, v in host_views.items():
            np.multiply(to_numpy(grads[k]), share, out=v)

    return pack, lambda: comm.allreduce_(host), lambda params: {k: from_host_like(v, params[k])
                                                                 for k, v in host_views.items()}


def _nccl_buffer(ref, total: int, split, comm: Communicator):
    """The flat buffer on the GPU, summed by NCCL on the current stream (the unique id goes over MPI)."""
    import cupy
    from cupy.cuda import nccl

    types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
             np.dtype(np.float16): nccl.NCCL_FLOAT16}
    if np.dtype(ref.dtype) not in types:
        raise ConfigError(f"NCCL reduces float16/32/64 gradients, got {ref.dtype}; use --dtype float32")
    uid = comm.comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None, root=0)
    with ref.device:
        nc = nccl.NcclCommunicator(comm.size, uid, comm.rank)
        flat = cupy.empty(total, dtype=ref.dtype)
    views = split(flat)
    nccl_type = types[np.dtype(ref.dtype)]

    def pack(grads, share):
        if grads is None:
            flat.fill(0)
            return
        for k, v in views.items():
            cupy.multiply(grads[k], share, out=v)

    def reduce():
        ptr = flat.data.ptr
        nc.allReduce(ptr, ptr, total, nccl_type, nccl.NCCL_SUM, cupy.cuda.get_current_stream().ptr)

    return pack, reduce, lambda params: views


def gpu_device(backend, local_rank: int) -> str | None:
    """The device a rank takes when none is given: ``cuda:<local rank>`` where the backend's
    default device is a CUDA device, else None (keep the default)."""
    from .backend import device_label

    label = device_label(backend.device)
    return f"cuda:{local_rank}" if label.startswith("cuda") else None
