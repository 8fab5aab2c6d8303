"""Data-parallel training over MPI (xpnet.parallel): real `mpiexec -n 2` jobs, every wait bounded.

Run as a script (``python tests/test_parallel.py MODE OUT ...``) this file is also the program
the MPI jobs run, so the single-process reference and the ranks train with the same code.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(
    not (HAVE_MPI4PY and MPIEXEC),
    reason="needs mpi4py and an mpiexec (pip install 'xpnet[mpi]' mpich): "
    + ("mpi4py is not installed" if not HAVE_MPI4PY else "no mpiexec on PATH"),
)
JOB_TIMEOUT = 90  # seconds: a hung job fails the test (and its process group is killed)


# ---------------------------------------------------------------------- what the ranks run
def synthetic(n=201, features=6, classes=3, seed=0):
    """A small data set whose size leaves a last global batch of 1 sample for batch 20."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features))
    t = rng.integers(0, classes, n)
    return x, t, x[:37], t[:37]


def train_weights(backend: str, dtype: str, comm, epochs: int = 1, batch_size: int = 20, optimizer="adam",
                  batchnorm: bool = False, dropout: float = 0.0, compile: str = "off"):
    """Train an MLP on :func:`synthetic` data; returns host weights and running statistics, the
    history, and whether the step was compiled."""
    import xpnet
    from xpnet.train import Trainer

    be = xpnet.get_backend(backend)
    model = xpnet.mlp([6, 16, 3], seed=0, backend=backend, dtype=dtype, batchnorm=batchnorm, dropout=dropout)
    data = tuple(be.asarray(a if a.dtype.kind != "f" else a.astype(dtype)) for a in synthetic())
    opt = xpnet.get_optimizer(optimizer, 0.01)
    trainer = Trainer(model, opt, data, batch_size=batch_size, seed=0, log=None, comm=comm, compile=compile)
    history = trainer.fit(epochs)
    arrays = {**model.params, **model.state}
    compiled = trainer.step.compiled
    return {k: xpnet.to_numpy(v).astype(np.float64) for k, v in arrays.items()}, history.records, compiled


def _worker(mode: str, out: str, *rest) -> int:
    from mpi4py import MPI

    from xpnet import parallel

    rank = MPI.COMM_WORLD.Get_rank()
    if mode == "parity":  # rest: backend:dtype[:bn][:drop][:compiled] (BatchNormalization, Dropout, compile on)
        comm = parallel.world()
        for pair in rest:
            backend, dtype, *flags = pair.split(":")
            weights, records, compiled = train_weights(
                backend, dtype, comm, epochs=2, batchnorm="bn" in flags, dropout=0.2 if "drop" in flags else 0.0,
                compile="on" if "compiled" in flags else "off")
            name = pair.replace(":", "-")
            np.savez(Path(out) / f"{name}-rank{rank}.npz", **weights)
            (Path(out) / f"{name}-rank{rank}.json").write_text(json.dumps({"records": records, "compiled": compiled}))
        return 0
    if mode == "averaging":
        return _averaging(parallel, rank, out)
    if mode == "mismatch":  # rest: what differs on rank 1 (data values, data size, lr, hidden, epochs, dtype)
        return _mismatch(parallel, rank, out, rest[0])
    # fault injection around the CLI: rest is the `xpnet train` command line
    import xpnet.checkpoint as ckpt
    import xpnet.cli
    import xpnet.model as M

    if mode == "disk-full" and rank == 0:  # the writes of epoch 2 fail (3 files per checkpoint)
        real, calls = ckpt.write_atomic, []

        def full(path, data):
            calls.append(path)
            if len(calls) > 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(path, data)

        ckpt.write_atomic = full
    if mode == "diverge":  # every rank: the learning rate becomes 1e30 after epoch 1
        import xpnet.train as T

        real_epoch = T.Trainer.train_epoch

        def diverging(self):
            if self.epoch == 1:
                self.optimizer.lr = 1e30
            return real_epoch(self)

        T.Trainer.train_epoch = diverging
    if mode == "inf-on-rank1" and rank == 1:  # rank 1's slice alone has an inf loss, in its 7th step of epoch 2
        import xpnet.train as T

        real_epoch, real_loss, steps = T.Trainer.train_epoch, M.Sequential.loss, {}

        def counted_epoch(self):
            steps.update(epoch=self.epoch + 1, n=0)
            return real_epoch(self)

        def loss(model, *a, **kw):
            steps["n"] += 1
            value = real_loss(model, *a, **kw)
            return value * float("inf") if (steps["epoch"], steps["n"]) == (2, 7) else value

        T.Trainer.train_epoch, M.Sequential.loss = counted_epoch, loss
    if mode in ("raise", "sigkill") and rank == 1:  # rank 1 fails in its 30th step (epoch 2 of digits)
        real_loss, steps = M.Sequential.loss, []

        def failing(self, *a, **kw):
            steps.append(1)
            if len(steps) == 30:
                if mode == "sigkill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise ValueError("injected failure on rank 1")
            return real_loss(self, *a, **kw)

        M.Sequential.loss = failing
    return xpnet.cli.main(list(rest))


def _averaging(parallel, rank: int, out: str) -> int:
    """Hand-made gradients: rank r's is (r + 1) * ones with share (0.75, 0.25); then a rank with
    no samples; then a rank whose weights drift."""
    import xpnet

    comm = parallel.world()
    result = {}
    p = {"W": np.full((2, 3), 10.0), "b": np.zeros(3)}
    opt = parallel.DistributedOptimizer(xpnet.SGD(lr=1.0), comm)
    opt.update(p, {k: np.full(v.shape, rank + 1.0) for k, v in p.items()}, (0.75, 0.25)[rank])
    result["after_one"] = p["W"].tolist()  # 10 - (0.75 * 1 + 0.25 * 2) = 8.75
    opt.update(p, None if rank == 0 else {k: np.full(v.shape, 4.0) for k, v in p.items()}, (0.0, 1.0)[rank])
    result["after_two"] = p["b"].tolist()  # 0 - 1.25 - 4 = -5.25
    mine = {"W": np.full(3, float(rank))}
    comm.broadcast_(mine)
    result["broadcast"] = mine["W"].tolist()
    comm.check_agree({"weights": p})
    p["b"][0] += rank  # rank 1 drifts
    try:
        comm.check_agree({"weights": p})
        result["drift"] = None
    except parallel.RankMismatchError as e:
        result["drift"] = str(e)
    (Path(out) / f"averaging-{rank}.json").write_text(json.dumps(result))
    return 0


def _mismatch(parallel, rank: int, out: str, what: str) -> int:
    """Rank 1 starts with ``what`` different; every rank writes the error it got (or 'none')."""
    import xpnet
    from xpnet.train import Trainer

    odd = rank == 1
    x, t, xt, tt = synthetic(n=181 if odd and what == "data size" else 201)
    if odd and what == "data values":
        x = x + 1e-9  # the same shapes, other values: read from another file
    dtype = "float32" if odd and what == "dtype" else "float64"
    model = xpnet.mlp([6, 17 if odd and what == "hidden" else 16, 3], seed=0, dtype=dtype, dropout=0.2)
    data = tuple(a.astype(dtype) if a.dtype.kind == "f" else a for a in (x, t, xt, tt))
    said = "none"
    try:
        trainer = Trainer(model, xpnet.Adam(lr=0.5 if odd and what == "lr" else 0.01), data, batch_size=20, log=None,
                          comm=parallel.world())
        trainer.fit(3 if odd and what == "epochs" else 2)
    except parallel.RankMismatchError as e:
        said = str(e)
    (Path(out) / f"mismatch-{rank}.txt").write_text(said)
    return 0


# ---------------------------------------------------------------------- helpers
def mpiexec(*args, n: int = 2, timeout: float = JOB_TIMEOUT, cwd=None):
    from procs import run

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("XPNET_BACKEND", None)
    return run([MPIEXEC, "-n", str(n), sys.executable, *map(str, args)], timeout=timeout, env=env, cwd=cwd)


def job(mode, out, *rest, **kw):
    """This file as the ranks' program; ``-m mpi4py`` aborts the job on an uncaught exception."""
    return mpiexec("-m", "mpi4py", HERE, mode, out, *rest, **kw)


# ---------------------------------------------------------------------- no MPI needed
def test_shards_cover_each_global_batch_in_order_with_shares_summing_to_one():
    from xpnet.parallel import shards

    for n, b, size in [(201, 20, 2), (10, 4, 2), (7, 6, 3), (100, 100, 4), (5, 4, 4)]:
        per_rank = [list(shards(n, b, r, size)) for r in range(size)]
        assert all(len(s) == len(per_rank[0]) for s in per_rank)  # every rank takes part in every step
        covered = []
        for step in zip(*per_rank):
            assert sum(share for _, _, share in step) == pytest.approx(1.0)
            assert all(step[r][1] == step[r + 1][0] for r in range(size - 1))  # contiguous, rank order
            covered += [i for lo, hi, _ in step for i in range(lo, hi)]
            if b % size == 0 and step[-1][1] - step[0][0] == b:  # a full global batch: equal slices
                assert {hi - lo for lo, hi, _ in step} == {b // size}
        assert covered == list(range(n))
    assert list(shards(201, 20, 0, 2))[-1] == (200, 200, 0.0)  # last batch of 1: rank 0 gets none
    assert list(shards(201, 20, 1, 2))[-1] == (200, 201, 1.0)


class StandInComm:
    """One rank of two; the other rank's packed contribution is given in advance."""

    size, rank, local_rank = 2, 0, 0

    def __init__(self, other: np.ndarray):
        self.other, self.buffers = other, []

    def allreduce_(self, buf):
        self.buffers.append(buf)
        buf += self.other


def test_distributed_optimizer_sums_shared_gradients_through_one_buffer(be, rng):
    from conftest import assert_close

    import xpnet
    from xpnet.parallel import DistributedOptimizer

    p0 = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    mine = {k: rng.standard_normal(v.shape) for k, v in p0.items()}
    theirs = {k: rng.standard_normal(v.shape) for k, v in p0.items()}
    share = 0.3
    host_dtype = xpnet.to_numpy(be.asarray(p0["b"])).dtype
    other = np.concatenate([(1 - share) * theirs[k].ravel() for k in p0]).astype(host_dtype)
    comm = StandInComm(other)
    params = {k: be.asarray(v.copy()) for k, v in p0.items()}  # torch may share a float64 array's memory
    opt = DistributedOptimizer(xpnet.SGD(lr=0.5), comm)
    for step in (1, 2):
        opt.update(params, {k: be.asarray(v) for k, v in mine.items()}, share)
        for k in p0:
            assert_close(params[k], p0[k] - step * 0.5 * (share * mine[k] + (1 - share) * theirs[k]), be)
    a, b = comm.buffers
    assert a is b and a.size == 15  # one persistent flat buffer, never reallocated
    assert opt.state["step"] == 2 and opt.lr == 0.5  # the wrapped optimizer's state shows through


def test_distributed_optimizer_hands_the_reduced_gradients_to_a_compiled_apply():
    pytest.importorskip("jax", reason="jax is not installed (pip install 'xpnet[jax]')")
    import xpnet
    from xpnet.parallel import DistributedOptimizer

    be = xpnet.get_backend("jax", dtype="float64")
    model, opt = xpnet.mlp([3, 2], seed=0, backend=be), xpnet.SGD(lr=0.5)
    p0 = {k: xpnet.to_numpy(v).copy() for k, v in model.params.items()}
    theirs = {k: np.full(v.shape, 2.0) for k, v in p0.items()}
    comm = StandInComm(np.concatenate([0.5 * theirs[k].ravel() for k in p0]))
    step = xpnet.compile_step(model, opt)
    calls = []
    dist = DistributedOptimizer(opt, comm, apply=lambda g: (calls.append(sorted(g)), step.apply(g)))
    mine = {k: be.asarray(np.ones(v.shape)) for k, v in p0.items()}
    for n in (1, 2):  # the second update's parameters are new arrays (the first ones were donated)
        dist.update(model.params, mine, 0.5)
        for k in p0:
            np.testing.assert_allclose(xpnet.to_numpy(model.params[k]), p0[k] - n * 0.5 * (0.5 + 1.0), rtol=0,
                                       atol=1e-15)
    assert calls == [sorted(p0)] * 2 and opt.state["step"] == 2 and len(comm.buffers) == 2
    with pytest.raises(xpnet.ConfigError, match="apply must be a function"):
        DistributedOptimizer(opt, comm, apply="sgd")


def test_distributed_optimizer_names_bad_gradients_before_reducing():
    import xpnet
    from xpnet.parallel import DistributedOptimizer

    comm = StandInComm(np.zeros(3))
    opt = DistributedOptimizer(xpnet.SGD(lr=0.1), comm)
    with pytest.raises(xpnet.ConfigError, match="grads do not match params"):
        opt.update({"b": np.zeros(3)}, {"c": np.zeros(3)})
    with pytest.raises(xpnet.ShapeError, match="has shape"):
        opt.update({"b": np.zeros(3)}, {"b": np.zeros(4)})
    assert comm.buffers == []  # nothing was sent


def test_world_is_none_without_a_launcher_and_refuses_a_launch_without_mpi4py(monkeypatch):
    import xpnet
    from xpnet import parallel

    for var in parallel.SIZE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    assert parallel.world() is None
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # not importable
    with pytest.raises(xpnet.BackendNotInstalledError, match=r"one of 4 .*pip install 'xpnet\[mpi\]'"):
        parallel.world()


def test_import_xpnet_and_build_a_trainer_import_no_mpi4py():
    code = ("import sys, xpnet, xpnet.train, xpnet.cli, xpnet.parallel; from tests.test_parallel import train_weights; "
            "train_weights('numpy', 'float32', None); assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    from procs import run

    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")}
    done = run([sys.executable, "-c", code], timeout=120, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------- real MPI jobs
@needs_mpi
def test_gradient_averaging_is_exact_on_hand_made_gradients(tmp_path):
    done = job("averaging", tmp_path)
    assert done.returncode == 0, done.stderr
    r0, r1 = (json.loads((tmp_path / f"averaging-{r}.json").read_text()) for r in (0, 1))
    for r in (r0, r1):
        assert r["after_one"] == [[8.75] * 3] * 2
        assert r["after_two"] == [-5.25] * 3
        assert r["broadcast"] == [0.0] * 3
        assert "rank 1 (weights) does not match rank 0" in r["drift"]


HAS_JAX = importlib.util.find_spec("jax") is not None
# the backend:dtype[:flags] pairs the parity tests below read, all trained by one job (every start of
# two ranks imports xpnet, jax and torch anew)
PARITY_PAIRS = {
    "global batch": ["numpy:float64"] + [f"{b}:float32" for b in ("torch", "jax") if importlib.util.find_spec(b)]
    + ["numpy:float64:bn"],
    "compiled": ["jax:float64:compiled", "jax:float64:bn:drop:compiled", "numpy:float64:bn:drop"] if HAS_JAX else [],
    "dropout": ["numpy:float64:drop"] + (["jax:float64:drop:compiled"] if HAS_JAX else []),
}


@pytest.fixture(scope="module")
def parity_job(tmp_path_factory):
    """The folder the ranks of one ``parity`` job wrote every pair of PARITY_PAIRS to."""
    out = tmp_path_factory.mktemp("parity")
    pairs = [p for group in PARITY_PAIRS.values() for p in group]
    done = job("parity", out, *pairs, timeout=150 + 2 * JOB_TIMEOUT)  # the three jobs' bounds together
    assert done.returncode == 0, done.stderr
    return out


@needs_mpi
def test_two_ranks_make_the_update_of_one_process_with_the_global_batch(parity_job):
    tmp_path, pairs = parity_job, PARITY_PAIRS["global batch"][:-1]
    r0, r1 = (np.load(tmp_path / f"numpy-float64-bn-rank{r}.npz") for r in (0, 1))  # BatchNorm: each rank
    assert {k for k in r0.files if "running" in k}  # normalises its slice; running statistics averaged
    assert all(np.array_equal(r0[k], r1[k]) for k in r0.files), "the ranks' BatchNorm statistics differ"
    for pair in pairs:
        backend, dtype = pair.split(":")
        ref_weights, ref_records, _ = train_weights(backend, dtype, None, epochs=2)
        r0, r1 = (np.load(tmp_path / f"{backend}-{dtype}-rank{r}.npz") for r in (0, 1))
        tol = {"rtol": 0, "atol": 1e-12} if dtype == "float64" else {"rtol": 1e-5, "atol": 1e-6}
        for k, expected in ref_weights.items():
            assert np.array_equal(r0[k], r1[k]), f"{pair}: ranks differ in {k}"
            np.testing.assert_allclose(r0[k], expected, **tol, err_msg=f"{pair} {k}")
        records = json.loads((tmp_path / f"{backend}-{dtype}-rank0.json").read_text())["records"]
        for got, want in zip(records, ref_records, strict=True):
            for col in ("train_loss", "train_acc", "test_loss", "test_acc"):
                assert got[col] == pytest.approx(want[col], rel=1e-9 if dtype == "float64" else 1e-5), (pair, col)


@needs_mpi
def test_two_ranks_with_compiled_steps_make_the_update_of_one_process(request):
    """jax float64, compile on: each rank's compiled gradient of its slice, the allreduce, a compiled
    update; 2 epochs of 11 global batches, the last of 1 sample (rank 0 has none, rank 1 one)."""
    pytest.importorskip("jax", reason="jax is not installed (pip install 'xpnet[jax]')")
    tmp_path, pairs = request.getfixturevalue("parity_job"), PARITY_PAIRS["compiled"]
    runs = {pair: [(np.load(tmp_path / f"{pair.replace(':', '-')}-rank{r}.npz"),
                    json.loads((tmp_path / f"{pair.replace(':', '-')}-rank{r}.json").read_text())) for r in (0, 1)]
            for pair in pairs}
    for pair, ranks in runs.items():
        (w0, info0), (w1, info1) = ranks
        assert info0["compiled"] == info1["compiled"] == pair.endswith(":compiled"), pair
        assert all(np.array_equal(w0[k], w1[k]) for k in w0.files), f"{pair}: the ranks differ"
    # one process, eager NumPy float64, the same global batches: the reduced gradients are summed in
    # another order (share * g over two ranks), so equal to rounding, not bitwise
    ref_weights, ref_records, _ = train_weights("numpy", "float64", None, epochs=2)
    (w, info), _ = runs["jax:float64:compiled"]
    for k, expected in ref_weights.items():
        np.testing.assert_allclose(w[k], expected, rtol=0, atol=1e-12, err_msg=k)  # measured: 2e-16
    for got, want in zip(info["records"], ref_records, strict=True):
        for col in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert got[col] == pytest.approx(want[col], rel=1e-10, abs=1e-12), col
    # BatchNormalization (each rank normalises its slice, statistics averaged) and Dropout (host
    # masks): no one-process equivalent, so the compiled ranks against the eager ranks (measured:
    # 1e-12 apart, Adam dividing by the small second moments of the BatchNorm parameters)
    (wc, ic), _ = runs["jax:float64:bn:drop:compiled"]
    (we, ie), _ = runs["numpy:float64:bn:drop"]
    assert {k for k in we.files if "running" in k} and set(wc.files) == set(we.files)
    for k in we.files:
        np.testing.assert_allclose(wc[k], we[k], rtol=1e-10, atol=1e-10, err_msg=k)
    for got, want in zip(ic["records"], ie["records"], strict=True):
        for col in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert got[col] == pytest.approx(want[col], rel=1e-10, abs=1e-12), col


@needs_mpi
def test_two_ranks_with_dropout_make_the_update_of_one_process(parity_job):
    """Each rank takes its rows of the one batch-wide mask one process draws (a rank with no rows
    in the last global batch of 1 sample still draws it); eager numpy and compiled jax."""
    tmp_path, pairs = parity_job, PARITY_PAIRS["dropout"]
    ref_weights, ref_records, _ = train_weights("numpy", "float64", None, epochs=2, dropout=0.2)
    for pair in pairs:
        name = pair.replace(":", "-")
        r0, r1 = (np.load(tmp_path / f"{name}-rank{r}.npz") for r in (0, 1))
        for k, expected in ref_weights.items():
            assert np.array_equal(r0[k], r1[k]), f"{pair}: ranks differ in {k}"
            np.testing.assert_allclose(r0[k], expected, rtol=0, atol=1e-12, err_msg=f"{pair} {k}")
        records = json.loads((tmp_path / f"{name}-rank0.json").read_text())["records"]
        for got, want in zip(records, ref_records, strict=True):
            for col in ("train_loss", "train_acc", "test_loss", "test_acc"):
                assert got[col] == pytest.approx(want[col], rel=1e-10, abs=1e-12), (pair, col)


@needs_mpi
@pytest.mark.parametrize("what, named", [
    ("data values", "training features"), ("data size", "training features"), ("lr", "optimizer"),
    ("hidden", "model"), ("epochs", "epochs"), ("dtype", "dtype"),
])
def test_ranks_started_on_different_runs_are_refused_naming_the_rank_and_what_differs(tmp_path, what, named):
    done = job("mismatch", tmp_path, what, timeout=JOB_TIMEOUT)
    assert done.returncode == 0, done.stderr  # no hang, no MPI "Message truncated"
    for rank in (0, 1):
        said = (tmp_path / f"mismatch-{rank}.txt").read_text()
        assert "were not started on the same" in said and f"rank 1 has {named}" in said, said
    from conftest import tally

    tally("hostile inputs")


@needs_mpi
def test_a_usage_error_on_one_rank_only_ends_the_whole_job(tmp_path):
    """``--lr -1`` on rank 1 only: argparse refuses it there; rank 0 must not wait for ever."""
    from procs import run

    common = ["-m", "xpnet", "train", "--dataset", "iris", "--epochs", "2", "--no-plot"]
    args = [MPIEXEC, "-n", "1", sys.executable, *common, "--out", str(tmp_path / "o"), ":",
            "-n", "1", sys.executable, *common, "--lr", "-1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = run(args, timeout=JOB_TIMEOUT, env=env)
    assert done.returncode != 0
    assert "--lr" in done.stderr and "Traceback" not in done.stderr, done.stderr
    from conftest import tally

    tally("hostile inputs")


@needs_mpi
def test_cli_checkpoints_move_between_one_and_two_ranks(tmp_path):
    from conftest import tally

    import xpnet.checkpoint as ckpt
    from xpnet.cli import main

    common = ["--dataset", "iris", "--hidden", "8", "--dtype", "float64", "--batch-size", "16", "--no-plot",
              "--quiet"]
    assert main(["train", *common, "--epochs", "3", "--out", str(tmp_path / "whole")]) == 0
    assert main(["train", *common, "--epochs", "1", "--out", str(tmp_path / "moved")]) == 0
    done = mpiexec("-m", "xpnet", "train", "--resume", tmp_path / "moved" / "checkpoint.npz", "--epochs", "2",
                   "--no-plot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("epoch 2/2") == 1 and "2 MPI ranks" in done.stdout  # rank 0 alone prints
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moved", "whole"]  # no folder claimed by rank 1
    assert main(["train", "--resume", str(tmp_path / "moved" / "checkpoint.npz"), "--epochs", "3", "--no-plot",
                 "--quiet"]) == 0
    tally("resumes compared", 2)
    whole, _, meta_w = ckpt.load(tmp_path / "whole" / "checkpoint.npz")
    moved, _, meta_m = ckpt.load(tmp_path / "moved" / "checkpoint.npz")
    for k, w in whole.params.items():
        np.testing.assert_allclose(moved.params[k], w, rtol=0, atol=1e-12)
    assert [r["test_acc"] for r in meta_m["history"]] == pytest.approx([r["test_acc"] for r in meta_w["history"]])


@needs_mpi
def test_info_reports_the_mpi_library_and_the_job_size_once():
    done = mpiexec("-m", "xpnet", "info")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("mpi: ")]
    assert len(lines) == 1 and "mpi4py" in lines[0] and "this job: 2 ranks" in lines[0], done.stdout


def test_each_rank_takes_the_gpu_of_its_local_rank_and_cpus_keep_theirs():
    from types import SimpleNamespace

    from xpnet.backend import resolve
    from xpnet.parallel import gpu_device

    assert gpu_device(resolve("numpy"), 3) is None
    assert gpu_device(SimpleNamespace(device="cuda:0"), 3) == "cuda:3"  # a stand-in for a CuPy backend


@needs_mpi
def test_a_batch_size_not_divisible_by_the_ranks_is_refused_with_the_fix(tmp_path):
    from conftest import tally

    done = mpiexec("-m", "xpnet", "train", "--batch-size", "63", "--epochs", "1", "--out", tmp_path / "o")
    tally("hostile inputs", 1)
    assert done.returncode != 0
    assert "63 is not a multiple of 2; use --batch-size 62 or 64" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "o" / "checkpoint.npz").exists()


@needs_mpi
def test_compile_on_without_a_compiler_is_the_one_process_message_under_mpi(tmp_path):
    from conftest import tally

    done = mpiexec("-m", "xpnet", "train", "--backend", "numpy", "--compile", "on", "--dataset", "iris",
                   "--batch-size", "16", "--epochs", "1", "--out", tmp_path / "o", "--no-plot")
    tally("hostile inputs", 1)
    assert done.returncode != 0
    assert done.stderr.count("cupy and torch on CUDA. Use --compile auto") == 1, done.stderr
    assert "MPI ranks" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o" / "checkpoint.npz").exists()


@needs_mpi
def test_an_output_folder_refused_on_rank_0_ends_every_rank(tmp_path):
    from conftest import tally

    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "history.json").write_text("{}")  # another run's file: rank 0 alone checks the folder
    done = mpiexec("-m", "xpnet", "train", "--epochs", "2", "--out", tmp_path / "o", "--no-plot")
    tally("hostile inputs", 1)
    assert done.returncode != 0
    assert done.stderr.count("already holds another run") == 1, done.stderr
    assert (tmp_path / "o" / "history.json").read_text() == "{}"


@needs_mpi
def test_a_diverging_loss_stops_every_rank_with_one_message(tmp_path):
    from conftest import tally

    done = mpiexec("-m", "xpnet", "train", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "3",
                   "--out", tmp_path / "o", "--no-plot")
    tally("hostile inputs", 1)
    assert done.returncode != 0
    assert "xpnet train: error: the train loss became" in done.stderr and "Lower the learning rate" in done.stderr
    assert "Traceback" not in done.stderr


@needs_mpi
def test_the_step_named_is_the_first_at_which_any_ranks_slice_went_bad(tmp_path):
    """Only rank 1's slice has an inf loss (in the 7th step of epoch 2), and the weights stay
    finite: rank 0's own losses never go bad, yet the message every rank agrees on names step 7."""
    from conftest import tally

    done = job("inf-on-rank1", tmp_path, "train", "--dataset", "iris", "--optimizer", "sgd", "--batch-size", "16",
               "--epochs", "3", "--out", tmp_path / "o", "--no-plot")
    tally("hostile inputs", 1)
    assert done.returncode != 0
    assert done.stderr.count("xpnet train: error: the train loss became") == 1, done.stderr
    assert re.search(r"became inf in epoch 2, step 7 of \d+; the last good checkpoint \(epoch 1\)", done.stderr), \
        done.stderr


@needs_mpi
def test_a_diverging_compiled_run_stops_every_rank_naming_the_epoch_and_step(tmp_path):
    from conftest import tally

    import xpnet.checkpoint as ckpt

    pytest.importorskip("jax", reason="jax is not installed (pip install 'xpnet[jax]')")
    out = tmp_path / "o"
    t0 = time.monotonic()
    done = job("diverge", tmp_path, "train", "--backend", "jax", "--compile", "on", "--dataset", "iris",
               "--optimizer", "sgd", "--batch-size", "16", "--epochs", "3", "--out", out, "--no-plot")
    tally("hostile inputs", 1)
    assert time.monotonic() - t0 < JOB_TIMEOUT
    assert done.returncode != 0
    assert "2 MPI ranks" in done.stdout and re.search(r"epoch 1/3 .*\+ compile", done.stdout), done.stdout  # compiled
    assert done.stderr.count("xpnet train: error: the train loss became") == 1, done.stderr  # one message
    assert re.search(r"became (nan|inf) in epoch 2, step \d+ of \d+; the last good checkpoint \(epoch 1\)",
                     done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    model, _, meta = ckpt.load(out / "checkpoint.npz")  # the rolled-back epoch 1, written by rank 0
    assert meta["epoch"] == 1 and all(np.isfinite(v).all() for v in model.params.values())


@needs_mpi
@pytest.mark.parametrize("mode, message", [
    ("disk-full", "could not write the checkpoint of epoch 2"),
    ("raise", "[rank 1 of 2] xpnet train: internal error: ValueError: injected failure on rank 1"),
    ("sigkill", ""),
])
def test_a_failure_on_one_rank_ends_the_job_and_keeps_the_last_checkpoint(tmp_path, mode, message):
    from conftest import tally

    import xpnet.checkpoint as ckpt

    out = tmp_path / "o"
    t0 = time.monotonic()
    done = job(mode, tmp_path, "train", "--epochs", "4", "--save-every", "1", "--out", out, "--no-plot",
               timeout=75)
    tally("kills survived" if mode == "sigkill" else "hostile inputs", 1)
    assert time.monotonic() - t0 < 60, "the job outlived a dead rank by more than 60 s"
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    _, _, meta = ckpt.load(out / "checkpoint.npz")  # the last good checkpoint is whole
    assert meta["epoch"] == 1


@needs_mpi
@pytest.mark.parametrize("backend, sig", [
    ("numpy", signal.SIGINT),
    pytest.param("jax", signal.SIGINT, marks=pytest.mark.skipif(
        importlib.util.find_spec("jax") is None, reason="jax is not installed")),
    ("numpy", signal.SIGTERM),
])
def test_ctrl_c_stops_every_rank_after_the_same_step_and_saves_the_last_epoch(tmp_path, backend, sig):
    """SIGINT to mpiexec (what Ctrl-C in a terminal does), or SIGTERM (what a batch system sends
    before its kill): the launcher forwards it to every rank; the ranks agree to stop after one
    step, roll back to the last completed epoch, and rank 0 writes it: the printed epoch is the
    saved one, and nothing else is lost."""
    import selectors
    import subprocess

    from conftest import tally
    from procs import child

    import xpnet.checkpoint as ckpt

    out = tmp_path / "o"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("XPNET_BACKEND", None)
    args = [MPIEXEC, "-n", "2", sys.executable, "-m", "xpnet", "train", "--epochs", "100000", "--out", out,
            "--no-plot", "--backend", backend]
    with child(list(map(str, args)), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        seen, deadline = [], time.monotonic() + JOB_TIMEOUT
        while not any(line.split("/")[0].split() == ["epoch", "3"] for line in seen):
            assert time.monotonic() < deadline, f"no third epoch within {JOB_TIMEOUT} s: {seen[-3:]}"
            if sel.select(timeout=1):
                line = proc.stdout.readline()
                assert line, f"the job ended early: {seen[-3:]} {proc.stderr.read()}"
                seen.append(line)
        os.kill(proc.pid, sig)
        rest, err = proc.communicate(timeout=JOB_TIMEOUT)
        tally("kills survived", 1)
    said = "interrupted after epoch " if sig == signal.SIGINT else "interrupted by SIGTERM after epoch "
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), (proc.returncode, err)
    assert "Traceback" not in err and err.count(said) == 1, err
    printed = int(err.split(said)[1].split(";")[0])
    assert printed >= 3
    _, _, meta = ckpt.load(out / "checkpoint.npz")
    assert meta["epoch"] == printed
    history = json.loads((out / "history.json").read_text())
    assert len(history["epochs"]) == printed and history["stopped"] == "interrupted"
    lines = [ln for ln in (seen + rest.splitlines()) if ln.startswith("epoch ")]
    assert len(lines) >= printed  # every saved epoch was printed before the stop


if __name__ == "__main__":
    sys.exit(_worker(*sys.argv[1:]))
