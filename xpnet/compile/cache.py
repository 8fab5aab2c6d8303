"""Compiled executables kept on disk between processes: jax's own persistent compilation cache,
in ``~/.cache/xpnet/jax`` unless ``XPNET_COMPILE_CACHE`` says otherwise (a folder, or ``off``).
The cache is keyed by the compiled program itself, so a changed model or jax version can never
pick up a stale executable."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

from ..errors import ConfigError

CACHE_ENV = "XPNET_COMPILE_CACHE"  # a folder, or "off"; unset: cache_dir_default()
CACHE_OFF = ("off", "0", "no", "none", "false")


def cache_dir_default() -> Path:
    """Where ``xpnet train`` keeps compiled executables: ``$XDG_CACHE_HOME/xpnet/jax``
    (``~/.cache/xpnet/jax`` when that is unset)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return Path(base if base else Path.home() / ".cache") / "xpnet" / "jax"


def _cache_problem(path: Path) -> str | None:
    """Why executables cannot be written under ``path`` (None when they can); creates nothing."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return "has no existing parent folder"
        probe = probe.parent
    if not probe.is_dir():
        return f"cannot be created: {str(probe)!r} is a file"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"is not writable ({str(probe)!r} is read-only)"
    return None


def cache_setting(path=None) -> tuple[Path | None, str]:
    """What :func:`use_cache` would do, changing nothing: ``(folder, "on")``, or ``(None, why)``
    when the cache would be off. ``path=None`` reads ``XPNET_COMPILE_CACHE``: a folder, or
    ``off``; unset means :func:`cache_dir_default`."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None, "JAX_COMPILATION_CACHE_DIR is set: jax's own setting is used"
    if path is None:
        value = os.environ.get(CACHE_ENV)
        if value is not None and value.strip().lower() in CACHE_OFF + ("",):
            return None, f"turned off by {CACHE_ENV}={value}"
        path = Path(value).expanduser() if value is not None else cache_dir_default()
    elif not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ConfigError(f"use_cache: expected a folder path, got {path!r}")
    path = Path(path).expanduser().absolute()
    problem = _cache_problem(path)
    if problem:
        return None, f"the compile cache folder {str(path)!r} {problem}; set {CACHE_ENV} to another folder or 'off'"
    return path, "on"


def _drop_folders(folder: Path) -> None:
    """Remove folders found among the cache's entries (jax writes files only; a folder in an
    entry's place, from a copy gone wrong, could be neither read nor replaced, run after run)."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


def use_cache(path=None) -> tuple[Path | None, str]:
    """Keep jax's compiled executables in the folder ``path`` across processes (jax's persistent
    compilation cache, every executable however quick its compile). ``path=None`` reads
    ``XPNET_COMPILE_CACHE``: a folder, or ``off``; unset means :func:`cache_dir_default`.

    Returns ``(folder, "on")``, or ``(None, why)`` when the cache stays off (turned off, a folder
    that cannot be written, or jax's own ``JAX_COMPILATION_CACHE_DIR`` set, which is then left
    in charge). Never imports jax: it is configured now if already imported, else when it is.
    Only jax compiles in xpnet, so other backends are unaffected."""
    folder, why = cache_setting(path)
    if folder is None:
        return folder, why
    _drop_folders(folder)
    settings = {"jax_compilation_cache_dir": str(folder), "jax_persistent_cache_min_compile_time_secs": 0}
    jax = sys.modules.get("jax")
    if jax is not None and hasattr(jax, "config"):
        for name, value in settings.items():
            jax.config.update(name, value)
    else:  # read by jax when it is imported
        for name, value in settings.items():
            os.environ[name.upper()] = str(value)
    return folder, why


def heal(caught, folder, notes: list) -> None:
    """jax warns, and recompiles, when an entry of the persistent compile cache cannot be read
    (a file cut short by a full disk or a killed run), and would keep the damaged file for
    ever: remove it so the next run writes it afresh, and add one note to ``notes`` for the
    trainer. Other warnings in ``caught`` are shown as they were."""
    for w in caught:
        text = str(w.message)
        found = re.search(r"persistent compilation cache entry for '([^']+)'", text)
        if found is None or not folder:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
        removed = 0
        for entry in Path(folder).glob(f"{glob.escape(found.group(1))}-*"):
            with contextlib.suppress(OSError):  # a folder in an entry's place is removed too
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                removed += 1
        notes.append(f"the compile cache in {folder!r} held an entry that could not be read "
                     f"({text.split(': ', 1)[-1][:120]}); compiled afresh, and {removed} file(s) "
                     "removed so the next run rewrites them")
