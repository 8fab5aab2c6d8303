"""The output folder's lock file: held while a run lives, removed when it ends, never two holders."""

import os
import signal
import subprocess
import time

import pytest
from procs import child, run, xpnet

from xpnet import outputs
from xpnet.errors import OutputError
from xpnet.outputs import LOCK_NAME, claim_output

pytestmark = pytest.mark.skipif(outputs.fcntl is None, reason="the lock file is removed only where flock is used")


def _wait_for_lock(proc, folder, timeout=60):
    deadline = time.monotonic() + timeout
    while not (folder / LOCK_NAME).exists() or not (folder / LOCK_NAME).read_text().strip():
        assert time.monotonic() < deadline and proc.poll() is None, "the run never claimed its folder"
        time.sleep(0.05)


def test_a_released_folder_keeps_no_lock_file(tmp_path):
    out = claim_output(tmp_path / "run")
    assert (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(os.getpid())
    out.close()
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    out.close()  # a second close does nothing
    claim_output(tmp_path / "run").close()  # free again, and again no file left
    assert list((tmp_path / "run").iterdir()) == []


def test_a_finished_xpnet_train_leaves_no_lock_file(tmp_path):
    out = tmp_path / "done"
    done = run(xpnet("train", "--dataset", "iris", "--epochs", 2, "--no-plot", "--quiet", "--out", out), timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "history.csv", "history.json"]


def test_a_running_run_still_refuses_a_second_and_a_killed_one_is_taken_over(tmp_path):
    out = tmp_path / "busy"
    argv = xpnet("train", "--dataset", "iris", "--epochs", 100000, "--out", out, "--quiet", "--no-plot")
    with child(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as first:
        _wait_for_lock(first, out)
        with pytest.raises(OutputError, match=rf"in use by another xpnet run \(process {first.pid}\)"):
            claim_output(out, overwrite=True)
        assert (out / LOCK_NAME).exists() and first.poll() is None  # the refused claim removed nothing
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert (out / LOCK_NAME).exists()  # a killed run cannot remove it...
    taken = claim_output(out, overwrite=True)  # ...but it is unlocked: the next run takes it over
    assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    taken.close()
    assert not (out / LOCK_NAME).exists()


def test_a_run_that_opened_the_lock_file_before_its_removal_does_not_claim_the_removed_file(tmp_path, monkeypatch):
    """The race the removal could open: B opens .xpnet.lock, A removes it and unlocks, B locks the
    removed file, C creates a new one and locks that: B and C would both hold the folder."""
    first = claim_output(tmp_path)
    real_open, opened = os.open, []

    def open_then_first_releases(path, flags, mode=0o777, **kw):
        fd = real_open(path, flags, mode, **kw)
        if os.fspath(path).endswith(LOCK_NAME) and not opened:
            opened.append(os.fstat(fd).st_ino)
            first.close()  # between B's open and B's lock
        return fd

    monkeypatch.setattr(outputs.os, "open", open_then_first_releases)
    second = claim_output(tmp_path)
    monkeypatch.undo()
    assert opened, "the lock file was never opened"
    assert os.path.samestat(os.fstat(second._fd), os.stat(tmp_path / LOCK_NAME))  # B holds the file that is there
    with pytest.raises(OutputError, match="in use by another xpnet run"):
        claim_output(tmp_path)  # so C is refused
    second.close()
    assert not (tmp_path / LOCK_NAME).exists()


def test_release_removes_only_its_own_lock_file(tmp_path):
    """Someone removed the file by hand and a new run made another: the first run's release leaves it."""
    first = claim_output(tmp_path / "a")
    (tmp_path / "a" / LOCK_NAME).unlink()
    second = claim_output(tmp_path / "a")
    first.close()
    assert (tmp_path / "a" / LOCK_NAME).read_text().strip() == str(os.getpid())
    with pytest.raises(OutputError, match="in use"):
        claim_output(tmp_path / "a")
    second.close()
    assert not (tmp_path / "a" / LOCK_NAME).exists()
