"""The array libraries xpnet knows, by name and by array: one :class:`~xpnet.backend.base.Library`
each. A library is added by its module and one entry in ``_CLASSES``."""

from __future__ import annotations

from .base import Library
from .cupy_lib import Cupy
from .dask_lib import Dask
from .jax_lib import Jax
from .numpy_lib import Numpy
from .strict_lib import Strict
from .torch_lib import Torch

_CLASSES = (Numpy, Cupy, Torch, Jax, Dask, Strict)  # the order in which an array's library is looked for
LIBRARIES: dict[str, Library] = {cls.name: cls() for cls in _CLASSES}
BACKENDS = tuple(LIBRARIES)
DEFAULT_BACKEND = "numpy"
# pip command that installs each backend (the package's extras are named the same).
INSTALL_HINT = {name: lib.install for name, lib in LIBRARIES.items()}


class _Other(Library):
    """Arrays of no library xpnet knows (Python scalars and lists, anything with ``__array__``)."""


_OTHER = _Other()
_by_type: dict[type, Library] = {}


def library(name: str) -> Library:
    """The :class:`Library` named ``name`` (a name of :data:`BACKENDS`; others: plain behaviour)."""
    return LIBRARIES.get(name, _OTHER)


def library_of(x) -> Library:
    """The :class:`Library` that made array ``x`` (cached per array type)."""
    lib = _by_type.get(type(x))
    if lib is not None:
        return lib
    for lib in LIBRARIES.values():
        if lib.owns(x):
            if type(x).__module__.split(".")[0] in lib.roots:  # a type of the library's own
                _by_type[type(x)] = lib
            return lib
    return _OTHER


def backend_name(x) -> str:
    """The xpnet name of the library that made array ``x`` (for messages and conversion)."""
    lib = library_of(x)
    return lib.name or type(x).__module__.split(".")[0] or type(x).__name__


def installed(name: str) -> bool:
    return library(name).installed()


def device_label(d) -> str:
    """A device as a user types it for XPNET_DEVICE: 'cpu', 'cuda:0', 'device1'...

    CuPy's devices print as ``<CUDA Device 0>``, which XPNET_DEVICE does not take.
    """
    for lib in LIBRARIES.values():
        text = lib.label(d)
        if text is not None:
            return text
    return str(d)


def valid_devices(name: str) -> list[str]:
    """The devices of backend ``name`` usable here, as a user types them for XPNET_DEVICE."""
    return LIBRARIES[name].devices()


def parse_device(name: str, spec: str | None):
    """Turn the user's device string into backend ``name``'s own device object.

    Every failure is a :class:`BackendError` naming the backend, the device given and the
    valid devices.
    """
    return LIBRARIES[name].device(spec)
