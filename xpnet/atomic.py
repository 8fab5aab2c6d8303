"""Files written atomically: a crash leaves the old file or the new one, never half of one.

The bytes go to a temporary file in the same folder, are flushed and fsync'ed, and the file is
renamed over the target (one atomic step), then the folder is fsync'ed. A new file gets the mode
``open(path, "w")`` would give it. Checkpoints, histories, plots and downloads are written so.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _proc_umask() -> int | None:
    """The umask as Linux shows it in /proc/self/status (read without changing it), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_by_setting() -> int:
    # os.umask reads the mask only by setting it, for every thread at once: done once, at import
    old = os.umask(0o022)
    os.umask(old)
    return old


_UMASK_AT_IMPORT = _umask_by_setting() if _proc_umask() is None else 0o022


def _umask() -> int:
    """The process umask: read from /proc each time where it can be, else the one at import."""
    mask = _proc_umask()
    return _UMASK_AT_IMPORT if mask is None else mask


def _new_file_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: the file's own if it exists, else 0666 & ~umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_file(path, suffix: str = ".tmp"):
    """Yield a binary file whose bytes replace ``path`` only when the block ends cleanly.

    The file is a temporary one in the same folder; on a clean exit it is flushed, fsynced
    and renamed onto ``path`` (an atomic step), then the folder is fsynced. On any error the
    temporary file is removed and ``path`` keeps its old contents. A kill (SIGKILL, power
    loss) can leave only a stray temporary file, never a half-written ``path``. The file
    gets the mode a plain ``open(path, "w")`` would give it (not the temporary file's 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable where the platform allows it
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)

