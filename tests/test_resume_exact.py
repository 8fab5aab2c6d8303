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
