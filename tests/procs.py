"""Child processes for tests: each in its own process group, every wait bounded, the whole group
killed at the end whatever happens, so no test leaves a process running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys


@contextlib.contextmanager
def child(args, **kw):
    """``subprocess.Popen(args)`` in a new session; on exit the group is killed and reaped."""
    proc = subprocess.Popen(args, start_new_session=True, **kw)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                stream.close()


def xpnet(*args) -> list[str]:
    """The command line that runs ``xpnet ARGS`` with this interpreter."""
    return [sys.executable, "-m", "xpnet", *map(str, args)]


def run(args, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run to the end (bounded by ``timeout``) and return the completed process, output as text."""
    with child(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw) as proc:
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(args, proc.returncode, out, err)
