"""Faults: SIGKILL at random points (mid-write included), SIGINT, a full or read-only disk,
a diverging run, and resume parity. The checkpoint on disk is always a good one."""

import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import tally
from procs import child as child_process

import xpnet
from xpnet import checkpoint as C
from xpnet import datasets
from xpnet.train import Trainer, build

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import xpnet
    from xpnet import checkpoint as C
    path = sys.argv[1]
    be = xpnet.get_backend("numpy", dtype="float64")
    model = xpnet.mlp([784, 256, 10], seed=0, backend=be)  # about 1.6 MB of weights
    opt = xpnet.Momentum(lr=0.1)
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        for k in list(model.params):
            model.params[k] = np.full(model.params[k].shape, float(i))
        C.save(path, model, opt, {"i": i})
""")


def _check_good(path) -> int:
    """Load the checkpoint: it must be whole and self-consistent. Returns its counter."""
    model, _, meta = C.load(path)
    for k in model.params:
        assert np.all(xpnet.to_numpy(model.params[k]) == meta["i"]), k
    return meta["i"]


def test_sigkill_at_random_points_never_leaves_a_broken_checkpoint(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "checkpoint.npz"
    rng = np.random.default_rng(2024)
    kills, mid_write, seen = 20, 0, []
    for _ in range(kills):
        with child_process([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.4))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        leftovers = list(tmp_path.glob(".checkpoint.npz.*.tmp"))
        mid_write += bool(leftovers)
        for f in leftovers:  # a kill mid-write leaves only a temp file, never a broken checkpoint
            f.unlink()
        if path.exists():
            seen.append(_check_good(path))
        tally("kills survived", 1)
    assert seen, "no checkpoint was ever completed"
    assert mid_write >= 1, "no kill landed in the middle of a write; the test proved nothing about it"


def test_sigkill_during_real_training_keeps_a_loadable_checkpoint(tmp_path):
    rng = np.random.default_rng(7)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "xpnet", "train", "--dataset", "digits", "--epochs", "100000",
           "--out", str(out), "--quiet", "--save-every", "1"]
    for _ in range(3):
        ckpt = out / "checkpoint.npz"
        with child_process(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as child:
            deadline = time.monotonic() + 120
            while not ckpt.exists() and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))  # then kill at a random point of later epochs
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        assert ckpt.exists(), "no checkpoint was written within two minutes of training"
        model, opt, meta = C.load(ckpt)
        assert meta["epoch"] >= 1 and opt is not None
        tally("kills survived", 1)


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    with child_process(
        [sys.executable, "-m", "xpnet", "train", "--dataset", "iris", "--epochs", "100000", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as child:
        for line in child.stdout:  # wait for the first epoch's line
            if "epoch" in line:
                break
        child.send_signal(signal.SIGINT)
        rest = child.stdout.read()
        assert child.wait(timeout=60) == 130
    assert "interrupted" in rest and "checkpoint saved to" in rest and "Traceback" not in rest
    model, opt, meta = C.load(out / "checkpoint.npz")
    assert meta["epoch"] >= 1


def test_full_disk_is_refused_before_training(tmp_path, monkeypatch):
    real = shutil.disk_usage

    def almost_full(path):
        return real(path)._replace(free=1000)

    monkeypatch.setattr(shutil, "disk_usage", almost_full)
    with pytest.raises(xpnet.ConfigError, match="has 1000 bytes free, but the checkpoints need about"):
        build("iris", out=tmp_path / "run", log=None)
    tally("hostile inputs", 1)


def test_read_only_output_directory_is_refused_before_training():
    """/proc is a read-only file system even for root (CI runs as root, so chmod proves nothing)."""
    with pytest.raises(xpnet.ConfigError, match="'/proc/xpnet-run' is not writable"):
        build("iris", out="/proc/xpnet-run", log=None)
    tally("hostile inputs", 1)


def test_diverging_run_names_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = build("digits", hidden=(64,), optimizer="sgd", lr=0.1, out=tmp_path, log=None, seed=0)
    trainer.fit(2)
    trainer.optimizer.lr = 1e38  # the third epoch diverges
    with pytest.raises(xpnet.NonFiniteError, match=r"in epoch 3, step \d+ of \d+.*last good checkpoint \(epoch 2\)"):
        trainer.fit(50)
    model, _, meta = C.load(tmp_path / "checkpoint.npz")
    assert meta["epoch"] == 2 and trainer.epoch == 2
    for k in model.params:
        assert np.isfinite(xpnet.to_numpy(model.params[k])).all()
    tally("hostile inputs", 1)


def test_resume_matches_one_run_on_every_backend(be, tmp_path):
    """N + resume N epochs equals 2N epochs in one go: bit for bit in float64 on numpy
    (tests/test_train.py), within float32 tolerance elsewhere."""
    data = datasets.iris()
    data.x_train, data.t_train = data.x_train[:48], data.t_train[:48]

    def trainer(out):
        model = xpnet.mlp([4, 6, 3], seed=1, backend=be)
        return Trainer(model, xpnet.Adam(lr=0.01), data, batch_size=16, seed=3, out=out, log=None)

    one = trainer(tmp_path / "one")
    one.fit(2)
    half = trainer(tmp_path / "half")
    half.fit(1)  # Adam's moments and step count, and the shuffling of epoch 2, come from the checkpoint
    resumed = Trainer.resume(tmp_path / "half" / "checkpoint.npz", data, backend=be, log=None)
    resumed.fit(2)
    assert resumed.epoch == one.epoch == 2 and resumed.optimizer.state["step"] == one.optimizer.state["step"] == 6
    exact = be.name == "numpy" and be.dtype_name == "float64"
    for k in one.model.params:
        a, b = xpnet.to_numpy(one.model.params[k]), xpnet.to_numpy(resumed.model.params[k])
        if exact:
            assert np.array_equal(a, b), k
        else:
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 if be.dtype_name == "float32" else 1e-12)
    tally("resumes compared", 1)
