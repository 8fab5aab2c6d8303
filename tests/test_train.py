"""The trainer: history, exact resume, NaN stop, Ctrl-C, early stop, backend parity, the target."""

import json
import time

import numpy as np
import pytest

import xpnet
from xpnet import backend as B
from xpnet import checkpoint as C
from xpnet import datasets
from xpnet.errors import ConfigError, NonFiniteError
from xpnet.train import History, Trainer, build, fit


def tiny_iris(n_train=40):
    d = datasets.iris()
    d.x_train, d.t_train = d.x_train[:n_train], d.t_train[:n_train]
    return d


def test_fit_on_every_backend_keeps_the_model_on_its_device(be):
    model = xpnet.mlp([4, 5, 3], seed=0, backend=be)
    trainer = Trainer(model, xpnet.SGD(lr=0.5), tiny_iris(32), batch_size=16, seed=0, log=None)
    history = trainer.fit(2)
    assert history["epoch"] == [1, 2] and history.stopped == "completed"
    for rec in history.records:
        assert np.isfinite(rec["train_loss"]) and 0 <= rec["test_acc"] <= 1
    assert B.namespace(model.params["W1"]) is be.xp and B.device(model.params["W1"]) == be.device


def test_resume_n_plus_n_equals_2n_bit_for_bit(tmp_path):
    opts = dict(
        dataset="iris", hidden=(8,), batch_size=16, seed=4, dtype="float64", backend="numpy", log=None
    )
    one = build(out=tmp_path / "one", **opts)
    one.fit(6)
    half = build(out=tmp_path / "half", **opts)
    half.fit(3)
    resumed = build(out=tmp_path / "resumed", resume=tmp_path / "half" / "checkpoint.npz", **opts)
    assert resumed.epoch == 3
    resumed.fit(6)
    for k in one.model.params:
        assert np.array_equal(one.model.params[k], resumed.model.params[k])
    for k in one.optimizer.state["m"]:
        assert np.array_equal(one.optimizer.state["v"][k], resumed.optimizer.state["v"][k])
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in one.history.records]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history.records]


def test_history_is_written_as_json_and_csv(tmp_path):
    h = fit("iris", epochs=2, batch_size=32, out=tmp_path, log=None)
    data = json.loads((tmp_path / "history.json").read_text())
    assert [r["epoch"] for r in data["epochs"]] == [1, 2] and data["stopped"] == "completed"
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,train_acc,test_loss,test_acc,seconds" and len(lines) == 3
    assert h.checkpoint == str(tmp_path / "checkpoint.npz")


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = build("iris", hidden=(5,), out=tmp_path, log=None)
    trainer.fit(1)
    good = np.array(trainer.model.params["W1"])
    trainer.model.params["W1"] = trainer.model.params["W1"] * np.nan
    with np.errstate(all="ignore"), pytest.raises(NonFiniteError, match="became nan in epoch 2.*epoch 1"):
        trainer.fit(3)
    model, _, meta = C.load(tmp_path / "checkpoint.npz")
    assert meta["epoch"] == 1 and np.array_equal(model.params["W1"], good)


def test_ctrl_c_saves_the_last_complete_epoch_and_returns(tmp_path):
    trainer = build("iris", hidden=(5,), out=tmp_path, log=None)
    real, calls = trainer.train_epoch, []

    def interrupted():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real()

    trainer.train_epoch = interrupted
    history = trainer.fit(10)
    assert history.stopped == "interrupted" and len(history) == 2
    _, _, meta = C.load(history.checkpoint)
    assert meta["epoch"] == 2 and len(meta["history"]) == 2


def test_early_stopping_stops_when_test_loss_stops_falling(tmp_path):
    trainer = build("iris", hidden=(5,), lr=0.5, optimizer="sgd", patience=1, log=None)
    trainer.x_test = trainer.x_test[:4]
    trainer.t_test = trainer.t_test[:4]
    history = trainer.fit(200)
    assert history.stopped == "early" and len(history) < 200
    losses = history["test_loss"]
    assert losses[-1] >= min(losses[:-1])


def test_output_directory_must_be_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        build("iris", out=blocker / "sub")


def test_numpy_and_torch_same_seed_same_accuracy():
    pytest.importorskip("torch", reason="torch is not installed")
    runs = {b: fit("digits", epochs=2, hidden=(64,), backend=b, seed=5, log=None) for b in ("numpy", "torch")}
    a, b = runs["numpy"], runs["torch"]
    assert [round(v, 3) for v in a["test_acc"]] == [round(v, 3) for v in b["test_acc"]]
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(a["test_loss"], b["test_loss"], rtol=1e-4)


def test_history_columns():
    h = History([{"epoch": 1, "test_acc": 0.5}])
    assert h["epoch"] == [1] and h["train_loss"] == [None] and h.last["test_acc"] == 0.5


@pytest.mark.slow
def test_default_training_reaches_98_percent_on_digits():
    t0 = time.perf_counter()
    history = fit(log=None)  # the defaults of `xpnet train`, numpy on the CPU
    seconds = time.perf_counter() - t0
    print(f"digits default: test accuracy {history.last['test_acc']:.4f} in {seconds:.1f} s")
    assert history.last["test_acc"] >= 0.98
