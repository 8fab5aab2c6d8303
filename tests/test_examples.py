"""Every example runs as a script (small settings through argv and environment variables)."""

import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from procs import run

from xpnet.datasets import idx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, *args, env=None, timeout=120, status=0):
    full_env = {**os.environ, **(env or {})}
    done = run([sys.executable, str(EXAMPLES / name), *map(str, args)], timeout=timeout, env=full_env)
    assert done.returncode == status, done.stdout + done.stderr
    return done.stdout if status == 0 else done.stderr


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_softmax_walkthrough_prints_the_textbook_numbers():
    out = run_example("softmax_walkthrough.py")
    line = next(x for x in out.splitlines() if x.startswith("softmax([0.3, 2.9, 4.0])"))
    values = [float(v) for v in line.split("[")[-1].strip("] ").split()]
    np.testing.assert_allclose(values, [0.01821127, 0.24519181, 0.73659691], atol=1e-6)
    assert "0.5108" in out and "2.3026" in out and "ok: backward equals (y - t) / N" in out


def test_softmax_walkthrough_shows_the_smallest_probability_of_large_scores():
    """softmax([1010, 1000, 990]) ends in exp(-20) / ... = 2.06e-09, as in the book, not a rounded 0."""
    out = run_example("softmax_walkthrough.py")
    line = next(x for x in out.splitlines() if x.startswith("softmax([1010, 1000, 990])"))
    values = [float(v) for v in line.split("[")[-1].strip("] ").split()]
    np.testing.assert_allclose(values, [9.99954600e-01, 4.53978686e-05, 2.06106005e-09], rtol=1e-4)


def test_spiral_reaches_97_percent_with_10_hidden_units(tmp_path):
    out = run_example("spiral.py", tmp_path)  # the full textbook run: 300 epochs
    acc = float(out.split("training accuracy ")[1].split()[0])
    assert acc >= 0.97
    held_out = float(out.split("held-out accuracy ")[1].split()[0])
    assert 0.85 <= held_out < 1 and held_out != acc  # measured on other points than the training ones
    if "plots written" in out:
        assert (tmp_path / "spiral_regions.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert not has_matplotlib(), out


def test_spiral_example_tests_on_points_it_never_trained_on(tmp_path, monkeypatch):
    """Its test set is a new draw of the same spiral, not the training set under another name
    (each arm starts at the origin, in both draws: the only points they share)."""
    monkeypatch.setenv("XPNET_EXAMPLE_EPOCHS", "1")
    monkeypatch.setattr(sys, "argv", ["spiral.py", str(tmp_path)])
    data = runpy.run_path(str(EXAMPLES / "spiral.py"))["data"]
    assert data.x_test.shape == data.x_train.shape == (300, 2)
    train_points = {tuple(p) for p in data.x_train.round(12)}
    shared = [tuple(p) for p in data.x_test.round(12) if tuple(p) in train_points]
    assert all(p == (0.0, 0.0) for p in shared) and len(shared) == 3, shared


def test_digits_example_runs_and_writes_what_xpnet_train_writes(tmp_path):
    out = run_example("digits.py", tmp_path, env={"XPNET_EXAMPLE_EPOCHS": "2"})
    assert "final test accuracy" in out
    written = sorted(p.name for p in tmp_path.iterdir())
    plot = ["curves.png"] if has_matplotlib() else []
    assert written == sorted(["checkpoint.npz", "history.csv", "history.json", *plot]), written  # no .xpnet.lock
    if plot:
        assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "no plot drawn" in out and "matplotlib" in out


def test_same_script_on_another_backend_by_environment(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed")
    out = run_example("digits.py", tmp_path, env={"XPNET_EXAMPLE_EPOCHS": "1", "XPNET_BACKEND": "torch"})
    assert "training on torch" in out


def test_mnist_from_a_local_copy(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", 200), ("t10k", 20)):  # at least one batch of 100
        idx.write(
            tmp_path / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        )
        idx.write(tmp_path / f"{part}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    out = run_example("mnist_local.py", tmp_path, tmp_path / "out", env={"XPNET_EXAMPLE_EPOCHS": "1"})
    assert "final test accuracy" in out and (tmp_path / "out" / "checkpoint.npz").is_file()


def test_mnist_local_without_the_files_says_so_and_downloads_nothing(tmp_path):
    """No network is tried (a mirror that would be used is a closed local port), no traceback, no
    folder or file made, and the message names the missing files and a fix this script takes."""
    (tmp_path / "data").mkdir()
    idx.write(tmp_path / "data" / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    env = {"XPNET_DATA_DIR": str(tmp_path / "cache")}
    err = run_example("mnist_local.py", tmp_path / "data", tmp_path / "out", env=env, status=1)
    assert "Traceback" not in err and "http" not in err, err
    assert "3 of the 4 mnist IDX files are not in" in err and "t10k-labels-idx1-ubyte.gz" in err
    assert "--data-dir" not in err and "xpnet train --dataset mnist" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no output folder, no cache
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["train-images-idx3-ubyte.gz"]
    err = run_example("mnist_local.py", tmp_path / "absent", env=env, status=1)
    assert "is not a folder" in err and "Traceback" not in err
    err = run_example("mnist_local.py", tmp_path / "data", tmp_path / "out", "cifar", env=env, status=1)
    assert "expected mnist or fashion-mnist" in err and "Traceback" not in err


def test_mnist_local_with_files_that_are_not_idx_is_a_sentence(tmp_path):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(b"not an IDX file")
    err = run_example("mnist_local.py", tmp_path, tmp_path / "out", status=1)
    assert "not an IDX file" in err and "Traceback" not in err, err


def test_seq2seq_addition_example_trains_and_answers(tmp_path):
    """A short run of the book's addition setting: the loss falls, accuracy is printed per epoch
    and three questions are answered (the questions printed the right way round)."""
    env = {"XPNET_EXAMPLE_EPOCHS": "2", "XPNET_EXAMPLE_SIZE": "1280", "XPNET_DATA_DIR": str(tmp_path)}
    out = run_example("seq2seq_addition.py", env=env)
    epochs = [line.split() for line in out.splitlines() if line.startswith("epoch")]
    assert [e[1] for e in epochs] == ["1", "2"], out
    losses = [float(e[3]) for e in epochs]
    assert losses[1] < losses[0] and all(0 <= float(e[6].rstrip("%")) <= 100 for e in epochs), out
    questions = [line for line in out.splitlines() if line.startswith("Q ")]
    assert len(questions) == 3, out
    for line in questions:
        a, b = line[2:].split(" T")[0].strip().split("+")
        assert line.split(" T")[1].split("->")[0].strip() == str(int(a) + int(b)), line
    err = run_example("seq2seq_addition.py", "--model", "lstm", env=env, status=2)
    assert "invalid choice" in err and "Traceback" not in err
