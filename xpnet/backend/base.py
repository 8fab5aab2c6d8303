"""What xpnet asks of an array library: one :class:`Library` subclass per library answers it.

Adding a library to xpnet is one module defining a subclass (its import, devices, uploads and
whatever it does differently) and one line in :mod:`xpnet.backend.libraries`. The defaults here
are the plain Array API behaviour; a subclass overrides only where its library differs.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from ..errors import BackendError, BackendNotInstalledError, BackendUnavailableError
from .dtypes import supports_float64


class SharedBuffer(NamedTuple):
    """A flat gradient buffer that the ranks sum in place (see :meth:`Library.shared_buffer`):
    ``flat`` (the library's array), ``multiply(g, share, out=view)``, ``zero()`` and ``reduce()``."""

    flat: Any
    multiply: Any
    zero: Any
    reduce: Any


class Library:
    """One array library behind xpnet's seam (the defaults: a plain Array API library)."""

    name = ""  # xpnet's name for it: XPNET_BACKEND, messages
    module = ""  # the module imported when it is first chosen
    api_module = ""  # the module of its Array API namespace (empty: ``module`` itself)
    roots: tuple[str, ...] = ()  # top-level modules its array types come from
    install = ""  # how to install it (a sentence for errors and ``xpnet info``)
    cast: str | None = None  # its own cast to float32, for dtype errors (None: the Array API's)
    listed_when_installed = True  # False: ``available()`` also checks that it can run here
    jit = False  # True: a whole step is compiled by the library (jax.jit)
    eager_note = ""  # why a step on it runs eagerly, appended to compile_step's reason
    compile_summary = ""  # what --compile does on it (``xpnet info``; empty: nothing)
    # True where ``x -= y`` and ``x[index] = v`` (any NumPy index: masks, integer arrays) change
    # the array itself, so every holder of ``x`` sees the change (the books' idioms rely on it)
    writes_in_place = True
    # True where the arrays have NumPy's own methods and attributes (``x.astype('f')``,
    # ``x.max(axis=1)`` giving an array, ``x.T`` on any rank, ``x.size`` an int, ``x.copy()``),
    # so that code written for NumPy runs on them unchanged
    numpy_methods = False
    # The module whose functions are NumPy's own for these arrays and for host data (``sum`` of
    # an int array a NumPy integer, ``sqrt`` of it a NumPy float): empty where there is none
    numpy_functions = ""

    # ------------------------------------------------------------------ loading
    def installed(self) -> bool:
        return self.module in sys.modules or importlib.util.find_spec(self.module) is not None

    def import_module(self):
        """The library's module; a missing or broken install is a sentence with the fix."""
        try:
            return importlib.import_module(self.module)
        except Exception as e:  # a broken install (missing .so, CUDA error) must be a sentence too
            if isinstance(e, ImportError) and not self.installed():
                raise BackendNotInstalledError(
                    f"backend {self.name!r} is not installed ({e}); install it with: {self.install}"
                ) from e
            raise BackendUnavailableError(
                f"backend {self.name!r} is installed but fails to import ({type(e).__name__}: {e}); "
                f"reinstall it: {self.install}"
            ) from e

    def load(self):
        """Import the library and return its Array API namespace."""
        mod = self.import_module()
        return importlib.import_module(self.api_module) if self.api_module else mod

    def report(self, mod, info: dict) -> str | None:
        """Add what ``xpnet info`` says beyond the version to ``info``; return why the library
        cannot run here, or None."""
        return None

    # ------------------------------------------------------------------ devices
    def devices(self) -> list[str]:
        """The devices usable here, as a user types them for XPNET_DEVICE."""
        return ["cpu"]

    def device(self, spec: str | None) -> Any:
        """The library's device object for the user's device string (None: its first device).
        Every failure is a :class:`BackendError` naming the library, the device and the valid ones."""
        text = None if spec is None else spec.strip()
        if text == "":
            raise self.bad_device(spec, " (the device name is empty)")
        return self.parse_device(text, spec)

    def parse_device(self, text: str | None, spec: str | None) -> Any:
        if text not in (None, "cpu", "cpu:0"):
            raise self.bad_device(spec, f": {self.name} arrays live in host memory only")
        return "cpu"

    def bad_device(self, spec, why: str = "", unavailable: bool = False) -> BackendError:
        cls = BackendUnavailableError if unavailable else BackendError
        return cls(
            f"backend {self.name!r} has no device {spec!r}{why}; valid devices here: "
            f"{', '.join(self.devices()) or '(none)'}. Set XPNET_DEVICE or --device to one of them "
            "(or leave it unset for the backend's first device)"
        )

    def label(self, d) -> str | None:
        """Device ``d`` as a user types it, where the library prints it otherwise (else None)."""
        return None

    def enable_float64(self) -> None:
        """Called when float64 is chosen (jax turns x64 on)."""

    def reports_float64(self, xp, label: str) -> bool:
        """What ``xpnet info`` says about float64 on the device ``label``."""
        return supports_float64(xp, self.device(label))

    # ------------------------------------------------------------------ arrays
    def owns(self, x) -> bool:
        return False

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def upload(self, xp, dev, a: np.ndarray, fresh: bool):
        """Host array ``a`` (already cast; ``fresh``: a copy nobody else holds) on device ``dev``."""
        return xp.asarray(a, device=dev)

    def like_device(self, dev):
        """The device to upload to, from the device an array of this library reports."""
        return dev

    def activate(self, dev, value=None):
        """A context manager making ``dev`` current where the library has a current device."""
        return contextlib.nullcontext(value)

    def context_of(self, x):
        """:meth:`activate` for array ``x``'s device."""
        return contextlib.nullcontext()

    def writeable(self, x) -> bool:
        """True where ``x -= y`` really changes ``x`` in place."""
        return array_api_compat.is_writeable_array(x)

    def sub_scaled_(self, p, g, alpha, work):
        """``p -= alpha * g`` in place; returns the buffer to pass as ``work`` next time."""
        p -= alpha * g
        return None

    def materialize(self, x):
        """Cut a lazy library's graph after an update."""
        return x

    def time_scan(self, x):
        """A ``lax.scan``-like ``scan(step, carry, xs, reverse=False) -> (carry, ys)`` for loops over
        time when ``x`` is being traced for compilation (one loop body in the compiled program
        instead of one copy a step), else None: the caller loops in Python."""
        return None

    def materialize_all(self, arrays: list) -> list:
        """:meth:`materialize` of arrays that may share a graph, computing it once."""
        return list(arrays)

    def set_items(self, x, index, value):
        """A new array: ``x`` with ``x[index] = value``, leaving ``x`` as it was; None where the
        library has no functional form (the caller then builds one from ``take`` and ``where``)."""
        return None

    def add_at(self, x, index, value):
        """NumPy's ``add.at(x, index, value)`` (repeated indices accumulate): the array holding the
        sums (``x`` itself where it changed in place), or None where the library has no such
        scatter (the caller then sums on the host)."""
        return None

    def constant(self, value: float, like):
        """``value`` as the scalar operand of ``maximum`` with arrays like ``like``."""
        return value

    def scatter_add(self, xp, shape: tuple, idx, values):
        """A new array of ``shape`` (``values``' dtype and device): zeros, then ``out[idx[k]] +=
        values[k]`` for every k, repeated indices accumulated. The default is the portable
        :func:`scatter_add_sorted`; a library with a native accumulating scatter overrides it."""
        return scatter_add_sorted(xp, shape, idx, values)

    # ------------------------------------------------------------------ other modules
    def shared_buffer(self, ref, total: int, comm) -> SharedBuffer | None:
        """A flat buffer of ``total`` elements like ``ref`` that the ranks of ``comm`` sum in place
        without going through a host copy, or None (the gradients then travel through the host)."""
        return None

    def graph_class(self, ref) -> type | None:
        """The CUDA-graph class (``cls(ref)`` with ``warmup()``, ``capture(body)``, ``replay()``)
        for arrays like ``ref``, or None where the library captures no CUDA graph."""
        return None


def scatter_add_sorted(xp, shape: tuple, idx, values):
    """:meth:`Library.scatter_add` with standard calls only: sort the rows by index, take a
    cumulative sum, and give each target row the difference of the sums at its segment's bounds
    (found by ``searchsorted``). O(N log N + rows * D), static shapes (it traces under
    ``jax.jit``); float32 results differ from a float64 sum by the cumulative sum's rounding
    (about 1e-6 relative to the largest partial sum)."""
    order = xp.argsort(idx, stable=True)
    sorted_idx = xp.take(idx, order)
    sums = xp.cumulative_sum(xp.take(values, order, axis=0), axis=0, include_initial=True)
    rows = xp.arange(shape[0], dtype=idx.dtype, device=array_api_compat.device(values))
    lo = xp.searchsorted(sorted_idx, rows, side="left")
    hi = xp.searchsorted(sorted_idx, rows, side="right")
    return xp.take(sums, hi, axis=0) - xp.take(sums, lo, axis=0)


def sub_scaled_out(mod, p, g, alpha, work):
    """``p -= alpha * g`` through a reused buffer: ``mod.multiply(g, alpha, out=work)`` (numpy,
    cupy). A fresh temporary the size of a weight costs on the CPU about as much as the arithmetic."""
    if work is None or work.shape != p.shape or work.dtype != p.dtype:
        work = mod.empty_like(p)
    mod.multiply(g, alpha, out=work)
    p -= work
    return work
