"""``--resume`` is exact: everything that decides the rest of a run is in the checkpoint, early
stopping's state (its patience, the best test loss and its epoch) included, so a run split at
any epoch and resumed ends where the whole run ends, at the same epoch with the same weights."""

import json

import numpy as np
import pytest
from conftest import tally

from xpnet import checkpoint as C
from xpnet import cli
from xpnet.errors import CheckpointError


def train(capsys, *args):
    code = cli.main(["train", "--dataset", "digits", "--hidden", "32", "--quiet", "--no-plot", "--lr", "0.01",
                     *map(str, args)])
    _, err = capsys.readouterr()
    assert code == 0, err
    return code


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    assert cli.main(["train", "--dataset", "digits", "--hidden", "32", "--quiet", "--no-plot", "--lr", "0.01",
                     "--patience", "2", "--epochs", "60", "--out", str(out)]) == 0
    model, _, meta = C.load(out / "checkpoint.npz")
    history = json.loads((out / "history.json").read_text())
    assert history["stopped"] == "early" and meta["epoch"] < 60  # the run does stop early
    return meta["epoch"], model


@pytest.mark.parametrize("split", [2, 4, 6, 8])
@pytest.mark.parametrize("patience_again", [False, True])
def test_a_split_patience_run_stops_where_the_whole_run_stops(whole, tmp_path, capsys, split, patience_again):
    stop_epoch, model = whole
    if split >= stop_epoch:
        pytest.skip(f"the whole run stopped at epoch {stop_epoch}, before the split at {split}")
    out = tmp_path / "split"
    train(capsys, "--patience", 2, "--epochs", split, "--out", out)
    # the patience comes from the checkpoint; giving the same one again changes nothing
    train(capsys, "--resume", out / "checkpoint.npz", "--epochs", 60, *(["--patience", 2] if patience_again else []))
    resumed, _, meta = C.load(out / "checkpoint.npz")
    assert meta["epoch"] == stop_epoch
    assert json.loads((out / "history.json").read_text())["stopped"] == "early"
    for k in model.params:
        np.testing.assert_array_equal(np.asarray(resumed.params[k]), np.asarray(model.params[k]), err_msg=k)
    tally("resumes compared")


@pytest.mark.parametrize("early", [
    "nonsense", {"patience": 0, "best_loss": 1.0, "best_epoch": 1}, {"patience": 2, "best_loss": "x", "best_epoch": 1},
    {"patience": 2, "best_loss": 1.0, "best_epoch": 99}, {"patience": True, "best_loss": None, "best_epoch": 0},
])
def test_a_hand_edited_early_stopping_state_is_a_checkpoint_error(tmp_path, capsys, early):
    out = tmp_path / "run"
    train(capsys, "--patience", 2, "--epochs", 2, "--out", out)
    model, opt, meta = C.load(out / "checkpoint.npz")
    meta["early_stopping"] = early
    edited = tmp_path / "edited.npz"
    C.save(edited, model, opt, meta)
    from xpnet import datasets
    from xpnet import train as T

    with pytest.raises(CheckpointError, match="meta.early_stopping"):
        T.Trainer.resume(edited, datasets.digits(), log=None)
    tally("hostile inputs")


# ------------------------------------------------------------------ --resume FILE without --out
def _export(run, capsys):
    assert cli.main(["export", str(run / "checkpoint.npz"), "--format", "safetensors"]) == 0
    capsys.readouterr()
    return run / "checkpoint.safetensors"


def test_resume_from_the_runs_own_safetensors_continues_in_its_folder(tmp_path, capsys):
    run = tmp_path / "run"
    train(capsys, "--epochs", 2, "--out", run, "--dtype", "float64")
    st = _export(run, capsys)
    train(capsys, "--resume", st, "--epochs", 4)
    assert C.load(run / "checkpoint.npz")[2]["epoch"] == 4
    tally("resumes compared")


def test_resume_from_a_safetensors_in_a_folder_without_checkpoint_npz(tmp_path, capsys):
    run, moved = tmp_path / "run", tmp_path / "moved"
    train(capsys, "--epochs", 2, "--out", run, "--dtype", "float64")
    st = _export(run, capsys)
    moved.mkdir()
    for f in (st, run / "history.json", run / "history.csv"):
        (moved / f.name).write_bytes(f.read_bytes())
    train(capsys, "--resume", moved / st.name, "--epochs", 3)
    assert C.load(moved / "checkpoint.npz")[2]["epoch"] == 3
    tally("resumes compared")


def test_resume_from_an_older_file_never_replaces_the_further_run_in_its_folder(tmp_path, capsys):
    run = tmp_path / "run"
    train(capsys, "--epochs", 2, "--out", run, "--dtype", "float64")
    st = _export(run, capsys)
    train(capsys, "--resume", run / "checkpoint.npz", "--epochs", 4)
    before = (run / "checkpoint.npz").read_bytes()
    code = cli.main(["train", "--resume", str(st), "--epochs", "6", "--quiet", "--no-plot"])
    err = capsys.readouterr().err
    assert code == 1 and "further on than" in err and f"--resume {run / 'checkpoint.npz'}" in err, err
    assert (run / "checkpoint.npz").read_bytes() == before
    tally("hostile inputs")


def test_the_fix_named_for_a_folder_holding_a_run_is_a_file_that_exists(tmp_path, capsys):
    folder = tmp_path / "histories-only"
    folder.mkdir()
    (folder / "history.json").write_text("{}")
    code = cli.main(["train", "--dataset", "iris", "--epochs", "1", "--out", str(folder), "--quiet", "--no-plot"])
    err = capsys.readouterr().err
    assert code == 1 and "already holds another run" in err and "--resume" not in err, err
    tally("hostile inputs")
