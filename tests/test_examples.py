"""Every example runs as a script (small settings through argv and environment variables)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from procs import run

from xpnet.datasets import idx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, *args, env=None, timeout=120):
    full_env = {**os.environ, **(env or {})}
    done = run([sys.executable, str(EXAMPLES / name), *map(str, args)], timeout=timeout, env=full_env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_softmax_walkthrough_prints_the_textbook_numbers():
    out = run_example("softmax_walkthrough.py")
    line = next(x for x in out.splitlines() if x.startswith("softmax([0.3, 2.9, 4.0])"))
    values = [float(v) for v in line.split("[")[-1].strip("] ").split()]
    np.testing.assert_allclose(values, [0.01821127, 0.24519181, 0.73659691], atol=1e-6)
    assert "0.5108" in out and "2.3026" in out and "ok: backward equals (y - t) / N" in out


def test_spiral_reaches_97_percent_with_10_hidden_units(tmp_path):
    out = run_example("spiral.py", tmp_path)  # the full textbook run: 300 epochs
    acc = float(out.split("training accuracy ")[1].split()[0])
    assert acc >= 0.97
    if "plots written" in out:
        assert (tmp_path / "spiral_regions.png").read_bytes()[:4] == b"\x89PNG"


def test_digits_example_runs_and_writes_a_checkpoint(tmp_path):
    out = run_example("digits.py", tmp_path, env={"XPNET_EXAMPLE_EPOCHS": "2"})
    assert "final test accuracy" in out and (tmp_path / "checkpoint.npz").is_file()


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
