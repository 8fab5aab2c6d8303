"""The command line: train / eval / predict / info / bench, errors and exit codes."""

import json
import os
import select
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from procs import child, xpnet
from procs import run as run_process

from xpnet import checkpoint as C
from xpnet import cli


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained(tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("run")
    code, text, err = run(
        ["train", "--dataset", "iris", "--epochs", "3", "--hidden", "8", "--out", str(out)], capsys
    )
    assert code == 0, err
    return out, text


def test_train_writes_checkpoint_history_and_plot(trained):
    out, text = trained
    assert "epoch 3/3" in text and "final test accuracy" in text
    for name in ("checkpoint.npz", "history.json", "history.csv"):
        assert (out / name).is_file()
    if (out / "curves.png").exists():
        assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        pytest.importorskip("matplotlib", reason="matplotlib is not installed")
        pytest.fail("matplotlib is installed but no plot was drawn")
    assert C.describe_file(out / "checkpoint.npz")["meta"]["dataset"] == "iris"


def test_quiet_prints_only_the_summary(tmp_path, capsys):
    code, text, _ = run(
        ["train", "--dataset", "iris", "--epochs", "2", "--quiet", "--no-plot", "--out", str(tmp_path)],
        capsys,
    )
    assert code == 0 and "epoch" not in text.split("final")[0] and "final test accuracy" in text


def test_eval_reports_the_trained_accuracy(trained, capsys):
    out, _ = trained
    history = json.loads((out / "history.json").read_text())
    code, text, _ = run(["eval", str(out / "checkpoint.npz"), "--json"], capsys)
    assert code == 0
    result = json.loads(text)
    assert result["dataset"] == "iris" and result["samples"] == 30
    assert abs(result["test_acc"] - history["epochs"][-1]["test_acc"]) < 1e-6


def test_predict_on_a_csv_of_raw_features(trained, tmp_path, capsys):
    out, _ = trained
    csv = tmp_path / "flowers.csv"
    csv.write_text("5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    code, text, _ = run(["predict", str(out / "checkpoint.npz"), str(csv)], capsys)
    lines = text.strip().splitlines()
    assert code == 0 and len(lines) == 2 and lines[0].split("\t")[1] in ("setosa", "versicolor", "virginica")
    code, text, _ = run(["predict", str(out / "checkpoint.npz"), "--limit", "4"], capsys)
    assert code == 0 and len(text.strip().splitlines()) == 4 and "true" in text


def test_predict_limit_caps_the_rows_printed_for_an_input_file_too(trained, tmp_path, capsys):
    out, _ = trained
    csv = tmp_path / "flowers.csv"
    csv.write_text("5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n" * 4)  # 8 samples
    ckpt = str(out / "checkpoint.npz")
    for extra, rows in (([], 8), (["--limit", "5"], 5), (["--limit", "1"], 1), (["--limit", "50"], 8)):
        code, text, err = run(["predict", ckpt, str(csv), *extra], capsys)
        assert code == 0, err
        assert [line.split("\t")[0] for line in text.splitlines()] == [str(i) for i in range(rows)], extra
    code, text, _ = run(["predict", ckpt], capsys)  # without INPUT: 10 test samples (iris has 30)
    assert code == 0 and len(text.splitlines()) == cli.PREDICT_TEST_SAMPLES


def _into_a_pipe_closed_early(argv, lines_read: int, timeout: float = 120):
    """``xpnet ARGV`` with its stdout into a pipe whose reader reads ``lines_read`` lines and then
    closes it, as ``| head`` does; returns (exit status, stderr text, what was read)."""
    r, w = os.pipe()
    with child(xpnet(*argv), stdout=w, stderr=subprocess.PIPE) as proc:
        os.close(w)
        got, deadline = b"", time.monotonic() + timeout
        try:
            while got.count(b"\n") < lines_read:
                assert time.monotonic() < deadline, f"no {lines_read} lines in {timeout} s: {got[-200:]!r}"
                ready, _, _ = select.select([r], [], [], 1.0)
                if ready:
                    chunk = os.read(r, 4096)
                    assert chunk, f"the output ended before {lines_read} lines: {got[-200:]!r}"
                    got += chunk
        finally:
            os.close(r)
        status = proc.wait(timeout=timeout)
        err = proc.stderr.read().decode()
    return status, err, got.decode()


def test_predict_into_head_ends_quietly(trained, tmp_path):
    """20,000 rows (~400 KB of output) cannot fit in the pipe, so the reader's close is met mid-way."""
    out, _ = trained
    big = tmp_path / "many.npy"
    np.save(big, np.tile([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], (10_000, 1)))
    status, err, got = _into_a_pipe_closed_early(["predict", out / "checkpoint.npz", big], lines_read=1)
    assert got.startswith("0\t")
    assert status == cli.EXIT_CLOSED_PIPE and err == "", err


@pytest.mark.parametrize("argv", [["--version"], ["info"], ["predict", "CKPT"], ["eval", "CKPT"],
                                  ["train", "--dataset", "iris", "--epochs", "3", "--no-plot", "--out", "OUT"],
                                  ["train", "--help"]])
def test_every_command_ends_quietly_when_its_reader_has_gone(argv, trained, tmp_path):
    out, _ = trained
    names = {"CKPT": str(out / "checkpoint.npz"), "OUT": str(tmp_path / "run")}
    status, err, _ = _into_a_pipe_closed_early([names.get(a, a) for a in argv], lines_read=0)
    # --help: argparse itself drops a failed write of the help, then exits 0
    assert status == (0 if "--help" in argv else cli.EXIT_CLOSED_PIPE), err
    assert "Traceback" not in err and "Broken pipe" not in err and "error" not in err, err
    assert err == "", err


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch, capsys):
    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")  # e.g. a socket; stdout is pytest's capture, still open

    monkeypatch.setitem(cli.COMMANDS, "info", broken)
    monkeypatch.setattr(cli, "_reader_gone", lambda: False)
    code, _, err = run(["info"], capsys)
    assert code == cli.EXIT_ERROR and "xpnet info: error: [Errno 32] Broken pipe" in err


def test_backend_option_equals_the_environment_variable(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch", reason="torch is not installed")
    args = ["train", "--dataset", "iris", "--epochs", "2", "--quiet", "--no-plot"]
    assert run(args + ["--backend", "torch", "--out", str(tmp_path / "a")], capsys)[0] == 0
    monkeypatch.setenv("XPNET_BACKEND", "torch")
    assert run(args + ["--out", str(tmp_path / "b")], capsys)[0] == 0
    ha = json.loads((tmp_path / "a" / "history.json").read_text())["epochs"]
    hb = json.loads((tmp_path / "b" / "history.json").read_text())["epochs"]
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]
    model, _, _ = C.load(tmp_path / "b" / "checkpoint.npz", backend="numpy")
    assert model.params["W1"].dtype == np.float32


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--optimizer", "adamw"], "choose from 'sgd', 'momentum'"),
        (["train", "--dataset", "cifar"], "choose from 'digits', 'iris'"),
        (["train", "--backend", "tensorflow"], "choose from 'numpy', 'cupy'"),
        (["train", "--epochs", "0"], "expected a positive integer"),
        (["train", "--hidden", "12,x"], "hidden layer sizes must be integers"),
        (["train", "--lr", "-1"], "positive number"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_the_valid_choices(argv, needle, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2 and needle in err


@pytest.mark.parametrize("flag, parse, check", [
    ("positive_int", int, "size_arg"),
    ("positive_float", float, "positive_arg"),
    ("non_negative_float", float, "non_negative_arg"),
    ("seed", int, "seed_arg"),
])
def test_a_flag_takes_exactly_what_the_library_check_takes(flag, parse, check):
    import argparse

    from xpnet import checks
    from xpnet.cli import argtypes

    for text in ["1", "7", "0", "-3", "2.5", "1e-3", "nan", "inf", "-inf", "x", "", str(2**63 - 1), str(2**63)]:
        try:
            library = getattr(checks, check)("value", parse(text))
        except (ValueError, checks.ConfigError):
            library = None
        try:
            given = getattr(argtypes, flag)(text)
        except argparse.ArgumentTypeError:
            given = None
        assert given == library, (flag, text)


def test_xpnet_errors_exit_1_with_a_sentence(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(["train", "--out", str(blocker / "sub")], capsys)
    assert code == 1 and "not writable" in err
    (tmp_path / "bad.npz").write_bytes(b"nope")
    code, _, err = run(["eval", str(tmp_path / "bad.npz")], capsys)
    assert code == 1 and "not an xpnet checkpoint" in err


def test_info_lists_every_backend(capsys):
    code, text, _ = run(["info", "--json"], capsys)
    report = json.loads(text)
    assert code == 0 and report["xpnet"]
    names = [b["backend"] for b in report["backends"]]
    assert names == ["numpy", "cupy", "torch", "jax", "dask", "array_api_strict"]
    numpy_row = report["backends"][0]
    assert numpy_row["usable"] and numpy_row["float64"]
    code, text, _ = run(["info"], capsys)
    assert code == 0 and "cupy" in text and "numpy" in text


def test_bench_dispatches_to_the_bench_module(monkeypatch):
    seen = []
    fake = types.ModuleType("xpnet.bench")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "xpnet.bench", fake)
    assert cli.main(["bench", "--quick", "W1"]) == 0 and seen == [["--quick", "W1"]]


def test_bench_missing_module_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "xpnet.bench", None)
    code, _, err = run(["bench"], capsys)
    assert code == 1 and "xpnet.bench" in err


def test_import_pulls_in_no_optional_package():
    code = (
        "import sys, xpnet, xpnet.cli, xpnet.train, xpnet.checkpoint, xpnet.plots, xpnet.datasets, "
        "xpnet.data, xpnet.compile, xpnet.export; bad = [m for m in ('torch', 'jax', 'cupy', 'matplotlib', "
        "'tqdm', 'dask', 'onnx', 'onnxruntime', 'safetensors', 'mpi4py') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = run_process([sys.executable, "-c", code], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_command_line_imports_the_benchmark_only_for_xpnet_bench():
    code = "import sys, xpnet.cli; sys.exit(1 if 'xpnet.bench' in sys.modules else 0)"
    done = run_process([sys.executable, "-c", code], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_console_script_version():
    done = run_process([sys.executable, "-m", "xpnet.cli", "--version"], timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("xpnet ")


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise(tmp_path):
    """On a terminal (a pty here) tqdm draws a bar over the epochs; through a pipe, plain lines."""
    pytest.importorskip("tqdm", reason="tqdm not installed (pip install 'xpnet[progress]')")
    import fcntl
    import pty
    import struct
    import termios

    argv = [sys.executable, "-m", "xpnet", "train", "--dataset", "iris", "--epochs", "3", "--no-plot"]
    master, slave = pty.openpty()  # no os.fork here: jax, loaded by other tests, warns about it
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # an 80x24 terminal
    chunks = []
    with child([*argv, "--out", str(tmp_path / "tty")], stdin=slave, stdout=slave, stderr=slave) as proc:
        os.close(slave)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        status = proc.wait(timeout=60)
    screen = b"".join(chunks).decode(errors="replace")
    assert status == 0, screen
    assert "epoch/s" in screen or "s/epoch" in screen, screen  # tqdm's rate, with unit "epoch"
    assert "final test accuracy" in screen
    piped = run_process([*argv, "--out", str(tmp_path / "pipe")], timeout=120)
    assert piped.returncode == 0
    assert "epoch/s" not in piped.stderr + piped.stdout and "s/epoch" not in piped.stderr + piped.stdout
    assert "epoch 3/3" in piped.stdout
