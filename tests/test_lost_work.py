"""No lost work: a run never replaces another run's checkpoint with a worse one, two runs never
share an output folder, a full disk keeps the last good files, what Ctrl-C prints is what was
saved, a resumed run honours or refuses every option, and an epoch's bookkeeping does not grow
with the epoch count."""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import tally
from procs import child, run, xpnet

import xpnet as X
from xpnet import checkpoint as C
from xpnet import cli, datasets
from xpnet import train as T
from xpnet.errors import ConfigError, LabelError, NonFiniteError, OutputError
from xpnet.train import checkpoints as TC
from xpnet.train import trainer as TT


def train_cli(capsys, *args):
    code = cli.main(["train", "--dataset", "iris", "--hidden", "8", "--quiet", "--no-plot", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def good_run(tmp_path, capsys):
    """An output folder holding a good run (20 epochs of iris), and its checkpoint's bytes."""
    out = tmp_path / "same"
    code, _, err = train_cli(capsys, "--epochs", 20, "--out", out)
    assert code == 0, err
    return out, (out / "checkpoint.npz").read_bytes()


# ------------------------------------------------------------------ --out holding another run
def test_a_new_run_into_a_folder_holding_a_run_is_refused(good_run, capsys):
    out, before = good_run
    code, _, err = train_cli(capsys, "--epochs", 3, "--lr", 1e10, "--optimizer", "sgd", "--out", out)
    assert code == 1
    assert "already holds another run (a checkpoint of epoch 20" in err and "--overwrite" in err
    assert f"--resume {out / 'checkpoint.npz'}" in err
    assert (out / "checkpoint.npz").read_bytes() == before
    tally("hostile inputs", 1)


def test_overwrite_never_replaces_a_checkpoint_with_a_diverged_or_untrained_one(good_run, capsys):
    out, before = good_run
    with np.errstate(all="ignore"):
        code, _, err = train_cli(capsys, "--epochs", 3, "--lr", 1e30, "--optimizer", "sgd", "--out", out,
                                 "--overwrite")
    assert code == 1 and "became" in err and "nothing was written" in err
    assert (out / "checkpoint.npz").read_bytes() == before
    tally("hostile inputs", 1)


def test_ctrl_c_in_the_first_epoch_of_an_overwriting_run_keeps_the_old_checkpoint(good_run, monkeypatch):
    out, before = good_run
    trainer = T.build("iris", hidden=(8,), out=out, overwrite=True, log=None)

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train_epoch", interrupted)
    history = trainer.fit(5)
    assert history.stopped == "interrupted" and history.checkpoint is None and trainer.epoch == 0
    assert (out / "checkpoint.npz").read_bytes() == before
    tally("hostile inputs", 1)


def test_overwrite_replaces_the_run_once_an_epoch_is_done_and_drops_its_plots(good_run, capsys):
    out, before = good_run
    (out / "curves.png").write_bytes(b"old plot")
    code, _, err = train_cli(capsys, "--epochs", 2, "--out", out, "--overwrite")
    assert code == 0, err
    meta = C.describe_file(out / "checkpoint.npz")["meta"]
    assert meta["epoch"] == 2 and len(json.loads((out / "history.json").read_text())["epochs"]) == 2
    assert not (out / "curves.png").exists()


def test_resume_into_its_own_folder_is_allowed(good_run, capsys):
    out, _ = good_run
    code, _, err = train_cli(capsys, "--resume", out / "checkpoint.npz", "--epochs", 22)
    assert code == 0, err
    assert C.describe_file(out / "checkpoint.npz")["meta"]["epoch"] == 22


def test_the_default_output_folder_never_overwrites(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        code, _, err = train_cli(capsys, "--epochs", 1)
        assert code == 0, err
    assert (tmp_path / "runs" / "iris" / "checkpoint.npz").exists()
    assert (tmp_path / "runs" / "iris-2" / "checkpoint.npz").exists()


def test_an_output_path_that_is_a_file_is_named(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, _, err = train_cli(capsys, "--epochs", 1, "--out", tmp_path / "f")
    assert code == 1 and "is a file, not a folder" in err
    tally("hostile inputs", 1)


@pytest.mark.parametrize("out", ["", "   "])
def test_an_empty_output_path_is_refused(out, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = train_cli(capsys, "--epochs", 1, "--out", out)
    assert code == 1 and "empty" in err and not list(tmp_path.iterdir())
    tally("hostile inputs", 1)


# ------------------------------------------------------------------ two runs, one folder
def test_two_trainers_cannot_share_an_output_folder(tmp_path):
    first = T.build("iris", hidden=(4,), out=tmp_path, log=None)
    with pytest.raises(OutputError, match=r"in use by another xpnet run \(process \d+\)"):
        T.build("iris", hidden=(4,), out=tmp_path, log=None)
    first.close()
    T.build("iris", hidden=(4,), out=tmp_path, log=None).close()  # free again once released
    tally("hostile inputs", 1)


def test_a_second_process_is_refused_while_a_run_writes_the_folder(tmp_path):
    out = tmp_path / "shared"
    with child(xpnet("train", "--dataset", "iris", "--epochs", 100000, "--out", out, "--quiet"),
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as first:
        deadline = time.monotonic() + 60
        while not (out / T.LOCK_NAME).exists() or not (out / T.LOCK_NAME).read_text().strip():
            assert time.monotonic() < deadline and first.poll() is None, "the first run never started"
            time.sleep(0.05)
        second = run(xpnet("train", "--dataset", "iris", "--epochs", 2, "--out", out, "--overwrite"), timeout=120)
        assert first.poll() is None
    assert second.returncode == 1, second.stderr
    assert f"in use by another xpnet run (process {first.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    tally("hostile inputs", 1)


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "killed"
    with child(xpnet("train", "--dataset", "iris", "--epochs", 100000, "--out", out, "--quiet", "--save-every", 1),
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as first:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.npz").exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    resumed = T.build(resume=out / "checkpoint.npz", out=out, log=None)  # the lock is free again
    resumed.close()
    tally("kills survived", 1)


# ------------------------------------------------------------------ a full disk
def _fsync_fails_after(monkeypatch, n_ok):
    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(C.os, "fsync", fsync)


def test_a_full_disk_mid_run_keeps_the_last_good_checkpoint_and_says_so(tmp_path, monkeypatch):
    trainer = T.build("iris", hidden=(6,), out=tmp_path, log=None, save_every=1)
    trainer.fit(2)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    _fsync_fails_after(monkeypatch, 1)  # the start-of-fit probe passes, the epoch-3 write fails
    with pytest.raises(OutputError, match=r"could not write the checkpoint of epoch 3 .*No space left on device.*"
                                          r"unchanged \(checkpoint of epoch 2\)"):
        trainer.fit(5)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "a temporary file was left behind"
    assert C.load(tmp_path / "checkpoint.npz")[2]["epoch"] == 2
    tally("hostile inputs", 1)


def test_a_full_disk_at_the_final_write_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    _fsync_fails_after(monkeypatch, 2)  # the two probes (claim, fit) pass, the checkpoint write fails
    code, _, err = train_cli(capsys, "--epochs", 2, "--out", tmp_path / "full")
    assert code == 1 and "No space left on device" in err and "xpnet train: error:" in err
    tally("hostile inputs", 1)


def test_free_space_is_checked_before_each_write(tmp_path, monkeypatch):
    trainer = T.build("iris", hidden=(6,), out=tmp_path, log=None, save_every=1)
    trainer.fit(1)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10_000_000))  # passes the start check
    monkeypatch.setattr(TC, "checkpoint_bytes", lambda m, o: 1000)
    monkeypatch.setattr(TC.shutil, "disk_usage", lambda p: real(p)._replace(free=5000))
    with pytest.raises(ConfigError, match="has 5000 bytes free"):
        trainer.fit(3)  # the start-of-fit estimate already refuses
    monkeypatch.setattr(TC, "HISTORY_BYTES_PER_EPOCH", 0)
    monkeypatch.setattr(TC, "check_writable", lambda folder, need=0: folder)
    with pytest.raises(OutputError, match=r"needs about \d+ bytes, but .* has 5000 free"):
        trainer.fit(3)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before


def test_the_space_estimate_counts_the_history_that_grows(tmp_path, monkeypatch):
    trainer = T.build("iris", hidden=(6,), out=tmp_path, log=None)
    real = shutil.disk_usage
    free = 2 * TC.checkpoint_bytes(trainer.model, trainer.optimizer) + 100_000
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=free))
    with pytest.raises(ConfigError, match="bytes free, but the checkpoints need about"):
        trainer.fit(10_000)  # 10,000 epochs of history do not fit in 100 kB
    tally("hostile inputs", 1)


# ------------------------------------------------------------------ Ctrl-C: printed == saved
@pytest.mark.parametrize("sig, status, said_as, rounds", [
    (signal.SIGINT, 130, "interrupted", 6),
    (signal.SIGTERM, 143, "interrupted by SIGTERM", 3),  # kill, docker stop, a batch system's time limit
])
def test_what_ctrl_c_prints_is_what_was_saved(tmp_path, sig, status, said_as, rounds):
    rng = np.random.default_rng(11)
    for i in range(rounds):
        out = tmp_path / f"run{i}"
        with child(xpnet("train", "--dataset", "iris", "--hidden", "4", "--epochs", 100000, "--out", out,
                         "--no-plot"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout:  # training has started
                if "epoch" in line:
                    break
            time.sleep(rng.uniform(0.0, 0.5))
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == status, err
        assert "Traceback" not in err
        said = re.search(said_as + r" after epoch (\d+); checkpoint of epoch (\d+): (\S+)", err)
        assert said, err
        assert said[1] == said[2]
        meta = C.load(said[3])[2]
        assert meta["epoch"] == int(said[1]) == len(meta["history"])
        history = json.loads((out / "history.json").read_text())
        assert history["epochs"][-1]["epoch"] == int(said[1]) and history["stopped"] == "interrupted"
        tally("kills survived", 1)


def test_after_an_interrupt_the_trainer_is_at_the_saved_epoch_and_continues_exactly(tmp_path, monkeypatch):
    data = datasets.iris()
    opts = dict(batch_size=16, seed=2, log=None)
    one = T.Trainer(X.mlp([4, 6, 3], seed=1, dtype="float64"), X.Adam(lr=0.01), data, **opts)
    one.fit(4)
    two = T.Trainer(X.mlp([4, 6, 3], seed=1, dtype="float64"), X.Adam(lr=0.01), data, out=tmp_path, **opts)
    real, calls = two.train_epoch, []

    def interrupted_mid_epoch():
        calls.append(1)
        loss = real()  # the epoch's steps have changed the weights...
        if len(calls) == 3:
            raise KeyboardInterrupt  # ...and then Ctrl-C arrives before the epoch is recorded
        return loss

    monkeypatch.setattr(two, "train_epoch", interrupted_mid_epoch)
    assert two.fit(4).stopped == "interrupted" and two.epoch == 2
    assert C.load(tmp_path / "checkpoint.npz")[2]["epoch"] == 2
    monkeypatch.setattr(two, "train_epoch", real)
    two.fit(4)
    for k in one.model.params:
        assert np.array_equal(one.model.params[k], two.model.params[k]), k


SIGTERM_IN_FIT = """
import os, signal, sys
import xpnet as X
from xpnet import datasets, train as T
trainer = T.Trainer(X.mlp([4, 6, 3], seed=1), X.SGD(lr=0.1), datasets.iris(), batch_size=16, out=sys.argv[1],
                    log=print)
real = trainer.train_epoch
def epoch():
    loss = real()
    if trainer.epoch == 2:  # in the third epoch, after its steps
        os.kill(os.getpid(), signal.SIGTERM)
    return loss
trainer.train_epoch = epoch
history = trainer.fit(50)
print("stopped", history.stopped, history.signal, trainer.epoch)
print("handler restored", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
"""


def test_sigterm_during_fit_saves_the_last_completed_epoch(tmp_path):
    """The library's trainer, not only the CLI: SIGTERM inside fit is Ctrl-C's rollback and save,
    and the default action is back once fit returns."""
    done = run([sys.executable, "-c", SIGTERM_IN_FIT, str(tmp_path)], timeout=120)
    assert done.returncode == 0, done.stderr
    assert "stopped interrupted SIGTERM 2" in done.stdout, done.stdout
    assert "handler restored True" in done.stdout
    assert "interrupted by SIGTERM: stopped after epoch 2; checkpoint saved to" in done.stdout
    assert C.load(tmp_path / "checkpoint.npz")[2]["epoch"] == 2
    assert json.loads((tmp_path / "history.json").read_text())["stopped"] == "interrupted"
    tally("kills survived", 1)


def test_a_programs_own_sigterm_handler_is_left_in_place():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        trainer = T.Trainer(X.mlp([4, 6, 3], seed=1), X.SGD(lr=0.1), datasets.iris(), batch_size=16, log=None)
        real = trainer.train_epoch

        def epoch():
            if trainer.epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return real()

        trainer.train_epoch = epoch
        history = trainer.fit(3)
        assert history.stopped == "completed" and history.signal is None and trainer.epoch == 3
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # still the program's
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------ the model is the user's
def test_training_does_not_switch_off_the_models_label_check():
    model = X.mlp([4, 5, 3], seed=0)
    T.Trainer(model, X.SGD(lr=0.1), datasets.iris(), batch_size=30, log=None).fit(1)
    be = X.get_backend()
    x, t = be.asarray(np.ones((2, 4))), be.asarray(np.array([0, 1]))
    with pytest.raises(LabelError, match="labels must lie in"):
        model.loss(x, t + 50)
    tally("hostile inputs", 1)


def test_a_binary_model_trains_on_0_1_labels_and_reports_its_true_accuracy(be):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4))
    t = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = X.mlp([4, 8, 1], loss="sigmoid", seed=0, backend=be)
    data = (be.asarray(x[:160]), be.asarray(t[:160]), be.asarray(x[160:]), be.asarray(t[160:]))
    history = T.Trainer(model, X.Adam(lr=0.1), data, batch_size=32, log=None).fit(3)  # 97.5% on numpy
    host = X.to_numpy(model.predict(be.asarray(x[160:])))[:, 0]
    truth = float(np.mean((host > 0) == t[160:]))
    assert truth > 0.9
    assert history.last["test_acc"] == pytest.approx(truth, abs=1e-6)


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 2] * 80), "binary labels must be 0 or 1"),
    (np.full((160, 2), 0.5), r"shape \(N,\) or \(N, 1\)"),
])
def test_a_binary_model_refuses_labels_that_are_not_0_1(labels, message):
    be = X.get_backend()
    model = X.mlp([4, 8, 1], loss="sigmoid", seed=0)
    with pytest.raises(LabelError, match=message):
        T.Trainer(model, X.SGD(lr=0.1), (be.asarray(np.ones((160, 4))), be.asarray(labels)), batch_size=32, log=None)
    tally("hostile inputs", 1)


def test_the_trainer_names_data_it_cannot_use(be):
    model = X.mlp([4, 5, 3], seed=0, backend=be)
    x = be.asarray(np.ones((8, 4)))
    cases = [((x, [0, 1] * 4), X.BackendMismatchError, "training labels: expected an array"),
             ("digits.npz", ConfigError, "data must be a Dataset or a tuple"),
             ((x, be.asarray(np.zeros(8, dtype=np.int64)), x, None), ConfigError, "given together")]
    if be.name != "numpy":
        cases.append(((x, np.zeros(8, dtype=np.int64)), X.BackendMismatchError, "training labels"))
    for data, error, message in cases:
        with pytest.raises(error, match=message):
            T.Trainer(model, X.SGD(lr=0.1), data, batch_size=4, log=None)
    tally("hostile inputs", len(cases))


def test_the_trainer_refuses_a_model_without_parameters_and_a_non_optimizer():
    with pytest.raises(ConfigError, match="needs a model with parameters"):
        T.Trainer(X.Sequential([X.ReLU()]), X.SGD(lr=0.1), datasets.iris(), log=None)
    with pytest.raises(ConfigError, match="optimizer must be an xpnet optimizer"):
        T.Trainer(X.mlp([4, 3]), "adam", datasets.iris(), log=None)
    tally("hostile inputs", 2)


def test_features_that_overflow_the_model_dtype_are_refused_before_training():
    d = datasets.iris()
    d.x_train = d.x_train.copy()
    d.x_train[3, 1] = 1e39
    with pytest.raises(NonFiniteError, match=r"1 value\(s\) are values too large for float32"):
        T.Trainer(X.mlp([4, 3]), X.SGD(lr=0.1), d, log=None)
    tally("hostile inputs", 1)


@pytest.mark.parametrize("lr", ["1e-300", "1e-12"])
def test_a_learning_rate_that_changes_nothing_is_refused(lr, tmp_path, capsys):
    code, _, err = train_cli(capsys, "--epochs", 1, "--optimizer", "sgd", "--lr", lr, "--out", tmp_path)
    assert code == 1 and "too small for float32 weights" in err
    tally("hostile inputs", 1)


def test_a_diverging_cli_run_shows_no_numpy_warning(tmp_path):
    done = run(xpnet("train", "--dataset", "iris", "--optimizer", "sgd", "--lr", "1e30", "--out", tmp_path / "d",
                     "--quiet"), timeout=120)
    assert done.returncode == 1
    assert "became" in done.stderr and "Warning" not in done.stderr and "Traceback" not in done.stderr
    tally("hostile inputs", 1)


# ------------------------------------------------------------------ --resume and its options
@pytest.mark.parametrize("flag, value, name", [
    ("--hidden", "16", "hidden"),
    ("--activation", "tanh", "activation"),
    ("--optimizer", "sgd", "optimizer"),
    ("--dataset", "digits", "dataset"),
    ("--seed", "7", "seed"),
    ("--scale", "standard", "scale"),
])
def test_resume_refuses_options_the_checkpoint_fixes(good_run, capsys, flag, value, name):
    out, before = good_run
    code, _, err = train_cli(capsys, "--resume", out / "checkpoint.npz", "--epochs", 25, flag, value)
    if flag == "--dataset":  # train_cli passes --dataset iris first; argparse keeps the last
        pass
    assert code == 1 and f"{name}=" in err and "cannot be changed when resuming" in err
    assert (out / "checkpoint.npz").read_bytes() == before
    tally("hostile inputs", 1)


def test_resume_accepts_the_same_values_it_was_trained_with(good_run, capsys):
    out, _ = good_run
    code, _, err = train_cli(capsys, "--resume", out / "checkpoint.npz", "--epochs", 21, "--optimizer", "adam",
                             "--seed", 0)
    assert code == 0, err


def test_resume_honours_lr_batch_size_and_dtype(good_run, capsys):
    out, _ = good_run
    code, _, err = train_cli(capsys, "--resume", out / "checkpoint.npz", "--epochs", 21, "--lr", "0.0005",
                             "--batch-size", "7", "--dtype", "float64")
    assert code == 0, err
    desc = C.describe_file(out / "checkpoint.npz")
    assert desc["optimizer"]["config"]["lr"] == 0.0005 and desc["meta"]["lr"] == 0.0005
    assert desc["meta"]["batch_size"] == 7 and desc["dtype"] == "float64"


def test_resume_takes_the_dataset_from_the_checkpoint(tmp_path, capsys):
    code, _, err = train_cli(capsys, "--epochs", 1, "--out", tmp_path)
    assert code == 0, err
    assert cli.main(["train", "--resume", str(tmp_path / "checkpoint.npz"), "--epochs", "2", "--quiet",
                     "--no-plot"]) == 0
    assert C.describe_file(tmp_path / "checkpoint.npz")["meta"]["dataset"] == "iris"


def test_resume_with_no_epochs_left_is_refused(good_run, capsys):
    out, _ = good_run
    code, _, err = train_cli(capsys, "--resume", out / "checkpoint.npz", "--epochs", 20)
    assert code == 1 and "20 have already run; ask for more than 20" in err
    tally("hostile inputs", 1)


# ------------------------------------------------------------------ bookkeeping per epoch
def test_an_epochs_bookkeeping_does_not_serialise_the_checkpoint(tmp_path, monkeypatch):
    calls = []
    real = C.to_bytes
    monkeypatch.setattr(C, "to_bytes", lambda *a, **k: calls.append(1) or real(*a, **k))
    trainer = T.build("iris", hidden=(4,), out=tmp_path, log=None)
    trainer.fit(60)
    assert len(calls) == 1  # the final write only
    calls.clear()
    T.build("iris", hidden=(4,), log=None).fit(60)  # no output folder: nothing serialised at all
    assert calls == []


def test_a_plot_that_cannot_be_written_is_a_note_after_the_saved_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'xpnet[plot]')")
    from xpnet import plots

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plots, "write_atomic", full)
    code = cli.main(["train", "--dataset", "iris", "--epochs", "1", "--quiet", "--out", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 0 and "no plot drawn" in err and "No space left" in err and "Traceback" not in err
    assert C.load(tmp_path / "checkpoint.npz")[2]["epoch"] == 1


def test_decision_regions_of_a_binary_model_use_the_sign_of_its_score():
    from xpnet.plots import decision_regions

    model = X.mlp([2, 1], loss="sigmoid", seed=0, dtype="float64")
    model.params["W1"][...] = np.array([[1.0], [0.0]])
    model.params["b1"][...] = 0.0
    xx, _, classes = decision_regions(model, np.array([[-1.0, -1.0], [1.0, 1.0]]), resolution=11)
    assert np.array_equal(classes, (xx > 0).astype(np.int64))


def _edit_meta(path, **changes):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    desc = json.loads(arrays["__xpnet__"].tobytes().decode())
    desc["meta"].update(changes)
    arrays["__xpnet__"] = np.frombuffer(json.dumps(desc).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("changes, key", [
    ({"epoch": "abc"}, "epoch"), ({"epoch": -3}, "epoch"), ({"history": "nope"}, "history"),
    ({"history": [{"epoch": 1}] * 30}, "history"), ({"batch_size": 0}, "batch_size"),
    ({"loader_rng": [1, 2]}, "loader_rng"),
])
def test_resume_from_a_hand_edited_run_state_is_a_checkpoint_error(good_run, capsys, changes, key):
    out, _ = good_run
    _edit_meta(out / "checkpoint.npz", **changes)
    code, _, err = train_cli(capsys, "--resume", out / "checkpoint.npz", "--epochs", 30)
    assert code == 1 and f"meta.{key} is" in err and "cannot be resumed" in err
    tally("hostile inputs", 1)


def test_a_dataset_that_does_not_fit_the_model_is_named():
    with pytest.raises(ConfigError, match=r"takes 4 features and gives 3 outputs, but dataset 'digits' has 64 "
                                          r"features and 10 classes"):
        T.Trainer(X.mlp([4, 8, 3]), X.SGD(lr=0.1), datasets.digits(), log=None)
    tally("hostile inputs", 1)


def test_the_trainer_runs_its_epochs_with_the_models_device_current(monkeypatch):
    import contextlib

    entered = []

    @contextlib.contextmanager
    def recording(x):
        entered.append(x)
        yield

    monkeypatch.setattr(TT, "device_context", recording)
    model = X.mlp([4, 3], seed=0)
    T.Trainer(model, X.SGD(lr=0.1), datasets.iris(), batch_size=30, log=None).fit(2)
    assert len(entered) == 1 and entered[0] is not None
