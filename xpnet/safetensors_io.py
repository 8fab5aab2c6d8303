"""A checkpoint as a safetensors file: the arrays under the names an ``.npz`` checkpoint uses
(``param/W1``, ``state/running_mean1``, ``opt/m/W1``...) and the JSON description in the header
metadata under ``__xpnet__``.

:func:`read_safetensors` gives what :func:`xpnet.checkpoint.read` reads from an ``.npz``, before
the checkpoint's checks, which it then runs. The ``safetensors`` package (the ``export`` extra) is
imported only when such a file is read or written.
"""

from __future__ import annotations

import importlib
import json
import os

import numpy as np

from .errors import CheckpointError, XPNetError
from .schema import META_KEY


class ExportUnavailableError(XPNetError, ImportError):
    """A package of the ``export`` extra is not installed (the message names it)."""


def require(module: str, package: str):
    """``module``, imported, or :class:`ExportUnavailableError` saying how to install ``package``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ExportUnavailableError(
            f"xpnet's ONNX and safetensors support needs the {package!r} package, which is not installed "
            f"({e}); install it with pip install 'xpnet[export]' (or pip install {package})"
        ) from e


def safetensors_bytes(desc: dict, arrays: dict) -> bytes:
    """A safetensors file of ``arrays`` with ``desc`` (JSON) in its header metadata."""
    st = require("safetensors.numpy", "safetensors")
    text = json.dumps(desc, allow_nan=True)
    return st.save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={META_KEY: text})


def is_safetensors(path) -> bool:
    """True for a name ending in ``.safetensors`` or a file that starts like one (8-byte length, ``{``)."""
    if os.fspath(path).endswith(".safetensors"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"


def read_safetensors(path) -> tuple[dict, dict]:
    """``(description, host arrays)`` of a safetensors checkpoint, as :func:`xpnet.checkpoint.read`
    gives them for an ``.npz``; the caller runs the checkpoint's own checks on them."""
    where = os.fspath(path)
    safetensors = require("safetensors", "safetensors")
    try:
        with safetensors.safe_open(where, framework="numpy") as f:
            header = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {where!r}: {e}") from e
    except Exception as e:  # SafetensorError: a bad header, a truncated file, an unknown dtype
        raise CheckpointError(
            f"{where!r} is corrupted, truncated or not a safetensors file ({type(e).__name__}: {e})"
        ) from e
    if META_KEY not in header:
        raise CheckpointError(
            f"{where!r} is a safetensors file but not an xpnet checkpoint: its metadata has no "
            f"{META_KEY!r} entry (metadata keys: {sorted(header)[:8]}); write one with "
            f"xpnet export CHECKPOINT --format safetensors"
        )
    try:
        desc = json.loads(header[META_KEY])
    except ValueError as e:
        raise CheckpointError(f"{where!r}: the JSON description is unreadable ({e})") from e
    return desc, arrays  # checked by xpnet.checkpoint.read, as an .npz's
