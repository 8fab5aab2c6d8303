"""Output folders: each run claims its own, and never another run's.

A run *claims* its output folder (:func:`claim_output`): the folder is created and proved
writable with room for the checkpoints; an operating-system lock on ``.xpnet.lock`` is taken
for the run's life (``flock``: released by the OS when the process ends, SIGKILL included, so
a killed run leaves no stale lock), so two runs can never write into one folder; and a folder
that already holds another run's files is refused unless the caller overwrites it on purpose
or resumes that very checkpoint. A run that releases the folder removes ``.xpnet.lock`` (a
killed one leaves the file, unlocked: the next run takes it over).

Removing the file without letting two runs in: the releasing run removes the file *while it
still holds the lock*, then closes it. A run that opened the file just before it was removed
gets the lock on the removed file once it is closed, so after locking, a run checks that the
file it holds is still the one at ``.xpnet.lock`` (same device and inode); if not, it opens
the path again. Whoever holds the lock on the file at that path holds the folder.
:func:`claim_fresh_output` picks ``base``, ``base-2``, ``base-3``... for the default folder,
which never refuses and never overwrites.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from . import checkpoint as ckpt
from .errors import ConfigError, OutputError

CHECKPOINT_NAME = "checkpoint.npz"
RUN_FILES = (CHECKPOINT_NAME, "history.json", "history.csv")  # what makes a folder "a run's"
LOCK_NAME = ".xpnet.lock"


def check_writable(folder, need_bytes: int = 0) -> Path:
    """Create ``folder`` if needed, prove a file can be written there and that ``need_bytes``
    are free (room for two checkpoints), or raise ConfigError before any training starts."""
    if not str(os.fspath(folder)).strip():
        raise ConfigError("the output directory is an empty string; give a folder with --out DIR")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output directory {os.fspath(folder)!r} is a file, not a folder; choose a folder "
                          "with --out DIR")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * min(need_bytes, 1 << 20))
            probe.flush()
            os.fsync(probe.fileno())
        free = shutil.disk_usage(folder).free
    except OSError as e:
        raise ConfigError(
            f"output directory {os.fspath(folder)!r} is not writable ({e.strerror or e}); "
            "choose another with --out DIR"
        ) from e
    if free < need_bytes:
        raise ConfigError(
            f"output directory {os.fspath(folder)!r} has {free} bytes free, but the checkpoints "
            f"need about {need_bytes}; free some space or choose another with --out DIR"
        )
    return folder


class Output:
    """An output folder claimed by one run: exclusively locked (``.xpnet.lock``) for the run's
    life, so two runs can never write into it at once. The lock is the operating system's
    (``flock``): it goes away with the process, SIGKILL included, so a killed run leaves no
    stale lock. :meth:`close` removes the file. :func:`claim_output` makes one."""

    def __init__(self, folder: Path, fd: int):
        self.folder = folder
        self._fd = fd
        self._finalizer = weakref.finalize(self, _release, folder / LOCK_NAME, fd, os.getpid())

    def close(self) -> None:
        """Release the folder and remove its lock file (also done when the object is
        garbage-collected or the process ends)."""
        self._finalizer()


def _is_current(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the file at ``path`` now (not one removed since)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:  # removed, and nothing at the path yet
        return False


def _release(path: Path, fd: int, owner: int) -> None:
    """Remove the lock file while still holding its lock, then unlock it by closing it (see the
    module's docstring). Only the process that claimed the folder removes it (not a forked child
    at its exit), and only its own file. Windows cannot remove an open file: it stays there."""
    try:
        if fcntl is not None and os.getpid() == owner and _is_current(fd, path):
            os.unlink(path)
    except OSError:  # already gone, or a read-only folder: the lock still goes with the close
        pass
    finally:
        os.close(fd)


def _try_lock(folder: Path, attempts: int = 100) -> int | None:
    """An open, exclusively locked descriptor of ``folder/.xpnet.lock``, or None if it is held."""
    path = folder / LOCK_NAME
    for _ in range(attempts):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # Windows
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            os.close(fd)
            return None
        if fcntl is None or _is_current(fd, path):
            break
        os.close(fd)  # locked a file its run removed on release: open the one at the path now
    else:  # runs that end faster than this one can lock: take the folder as in use
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _lock_holder(folder: Path) -> str:
    try:
        pid = (folder / LOCK_NAME).read_text().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


def _run_summary(folder: Path) -> str:
    """What an output folder holds, for the message that refuses to overwrite it."""
    found = [name for name in RUN_FILES if (folder / name).exists()]
    try:
        meta = ckpt.describe_file(folder / CHECKPOINT_NAME)["meta"]
        last = (meta.get("history") or [{}])[-1]
        acc = last.get("test_acc", last.get("train_acc"))
        what = f"a checkpoint of epoch {meta.get('epoch')}" + (f", accuracy {acc:.4f}" if acc is not None else "")
    except Exception:  # unreadable or absent: name the files only
        what = ", ".join(found)
    return what


def _same_file(a, b: Path) -> bool:
    try:
        return a is not None and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def claim_output(folder, overwrite: bool = False, resumed_from=None, need_bytes: int = 0) -> Output:
    """Claim ``folder`` for a new run, or raise :class:`~xpnet.errors.OutputError`.

    A folder already in use by another run (locked) is refused. A folder holding another
    run's files (``checkpoint.npz``, ``history.json``, ``history.csv``) is refused unless
    ``overwrite`` is true or this run resumes that very checkpoint (``resumed_from``).
    Even then nothing is replaced before this run completes its first epoch.
    """
    folder = check_writable(folder, need_bytes)
    fd = _try_lock(folder)
    if fd is None:
        raise OutputError(
            f"output directory {os.fspath(folder)!r} is in use by another xpnet run{_lock_holder(folder)}; "
            "wait for it to end or choose another --out DIR"
        )
    out = Output(folder, fd)
    if overwrite or _same_file(resumed_from, folder / CHECKPOINT_NAME) or _continues(resumed_from, folder):
        return out
    if any((folder / name).exists() for name in RUN_FILES):
        out.close()
        ckpt_path = folder / CHECKPOINT_NAME
        resumable = [p for p in (ckpt_path, *sorted(folder.glob("*.safetensors"))) if p.is_file()]
        cont = f"continue it with --resume {os.fspath(resumable[0])}, " if resumable else ""
        later = ""
        if resumed_from is not None and _same_file(Path(resumed_from).parent, folder):
            later = (f" that is further on than {os.fspath(resumed_from)!r}: continuing that file here would replace "
                     f"it")
        raise OutputError(
            f"output directory {os.fspath(folder)!r} already holds another run ({_run_summary(folder)}){later}; "
            f"{cont}choose another --out DIR, or pass "
            "--overwrite (overwrite=True) to replace it once the new run has completed an epoch"
        )
    return out


def _epoch_of(path) -> int | None:
    try:
        return int(ckpt.describe_file(path)["meta"].get("epoch", 0))
    except Exception:  # unreadable: not a run this one may continue
        return None


def _continues(resumed_from, folder: Path) -> bool:
    """Whether a run resumed from ``resumed_from`` (another checkpoint file in ``folder``, such
    as the run's own safetensors export) continues the run that ``folder`` holds: the folder's
    ``checkpoint.npz`` is absent, or not further on than that file (so nothing is lost when the
    resumed run replaces it)."""
    if resumed_from is None or not _same_file(Path(resumed_from).parent, folder):
        return False
    resumed = _epoch_of(resumed_from)
    if resumed is None:
        return False
    if not (folder / CHECKPOINT_NAME).exists():
        return True
    saved = _epoch_of(folder / CHECKPOINT_NAME)
    return saved is not None and saved <= resumed


def claim_fresh_output(base) -> Output:
    """Claim ``base``, or the first of ``base-2``, ``base-3``... that holds no run and is not in
    use: the default output folder never refuses and never overwrites."""
    base = Path(base)
    for i in range(1, 10_000):
        folder = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            return claim_output(folder)
        except OutputError:
            continue
    raise OutputError(f"no free output folder next to {os.fspath(base)!r}; choose one with --out DIR")
