"""What ``xpnet info`` says about each backend, and which backends can run here."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import BackendError
from .libraries import BACKENDS, library


def describe(name: str) -> dict:
    """What ``xpnet info`` prints for one backend: installed? version, devices, float64, why not."""
    lib = library(name)
    info: dict[str, Any] = {"backend": name, "installed": lib.installed()}
    if not info["installed"]:
        info["why"] = f"not installed: {lib.install}"
        return info
    mod = importlib.import_module(lib.module)
    info["version"] = getattr(mod, "__version__", "?")
    reason = lib.report(mod, info)
    if reason is not None:
        info["usable"] = False
        info["why"] = reason
        return info
    try:
        xp = lib.load()
        labels = lib.devices()
        info["devices"] = labels
        info["float64"] = {d: lib.reports_float64(xp, d) for d in labels}
        info["usable"] = True
    except BackendError as e:
        info["usable"] = False
        info["why"] = str(e)
    return info


def available() -> list[str]:
    """Backends that are installed (cupy only when a CUDA device is usable)."""
    out = []
    for name in BACKENDS:
        lib = library(name)
        if not lib.installed():
            continue
        if not lib.listed_when_installed:
            try:
                lib.load()
            except BackendError:
                continue
        out.append(name)
    return out
