"""The one backend seam: which array library, which device, which dtype.

This is the only package of xpnet that knows backends by name, reads ``XPNET_BACKEND``,
``XPNET_DEVICE`` and ``XPNET_DTYPE``, or imports cupy, torch, jax or dask. Everything
else receives arrays and takes the namespace from them (:func:`namespace`).

Each array library is one :class:`~xpnet.backend.base.Library` subclass in a module of its own
(``numpy_lib``, ``cupy_lib``, ``torch_lib``, ``jax_lib``, ``dask_lib``, ``strict_lib``), listed in
:mod:`~xpnet.backend.libraries`; :mod:`~xpnet.backend.choice` picks one, :mod:`~xpnet.backend.arrays`
moves arrays between them, :mod:`~xpnet.backend.report` says what ``xpnet info`` prints.

Choosing, from strongest to weakest:

1. explicit arguments (``get_backend("torch")``, ``mlp(..., backend="torch")``);
2. the in-code choice: ``with use_backend(...)`` for a block (blocks nest: an inner block
   changes only what it names, and the choice is per thread / per context), then
   ``set_backend(...)``, the process default (a block in force overrides it; after the
   block ends, the ``set_backend`` choice is in force, even one made inside the block);
3. the environment: ``XPNET_BACKEND``, ``XPNET_DEVICE``, ``XPNET_DTYPE``;
4. the default: numpy on the CPU in float32.

A device goes with the backend it was given with: ``XPNET_DEVICE`` with ``XPNET_BACKEND``,
the device of ``set_backend``/``use_backend`` with that call's backend. Given without a
backend (``XPNET_DEVICE`` alone, ``use_backend(device=...)``), it is for whichever backend
is used. The backend a device is for always honours it: a device it cannot use is an error,
never ignored. A device given for another backend is used where it exists for this one
(``XPNET_BACKEND=cupy XPNET_DEVICE=cuda:1`` and ``get_backend("torch")``: torch on cuda:1),
and otherwise leaves this backend on its default device (``to_backend(x, "numpy")`` still
works under ``XPNET_BACKEND=torch XPNET_DEVICE=cuda:0``).

A backend is imported the first time it is chosen, never at ``import xpnet``; nothing
ever falls back silently to another backend.
"""

from ..errors import (
    BackendError,
    BackendMismatchError,
    BackendNotInstalledError,
    BackendUnavailableError,
    DTypeError,
)
from .arrays import (
    check_float_dtype,
    check_same_backend,
    constant,
    device,
    device_context,
    dtype_error,
    from_host_like,
    is_writeable,
    materialize,
    materialize_all,
    namespace,
    scatter_add,
    sub_scaled_,
    time_scan,
    to_float,
    to_numpy,
)
from .base import Library, SharedBuffer, scatter_add_sorted
from .choice import Backend, _cache, get_backend, resolve, set_backend, to_backend, use_backend
from .cupy_lib import CUPY_INSTALL, nccl_status
from .cupy_lib import unusable_reason as _cupy_unusable_reason
from .dtypes import DEFAULT_DTYPE, DTYPES, dtype_name, host_dtype
from .libraries import (
    BACKENDS,
    DEFAULT_BACKEND,
    INSTALL_HINT,
    LIBRARIES,
    backend_name,
    device_label,
    installed,
    library,
    library_of,
)
from .libraries import parse_device as _parse_device
from .libraries import valid_devices as _valid_devices
from .report import available, describe
from .torch_lib import PINNED_UPLOAD_MAX, _constants

__all__ = [
    "BACKENDS", "CUPY_INSTALL", "DEFAULT_BACKEND", "DEFAULT_DTYPE", "DTYPES", "INSTALL_HINT", "LIBRARIES",
    "PINNED_UPLOAD_MAX",
    "Backend", "BackendError", "BackendMismatchError", "BackendNotInstalledError", "BackendUnavailableError",
    "DTypeError", "Library", "SharedBuffer", "scatter_add_sorted",
    "available", "backend_name", "check_float_dtype", "check_same_backend", "constant", "describe", "device",
    "device_context", "device_label", "dtype_error", "dtype_name", "from_host_like", "get_backend", "host_dtype",
    "installed", "is_writeable", "library", "library_of", "materialize", "materialize_all", "namespace",
    "nccl_status", "resolve",
    "scatter_add", "time_scan",
    "set_backend", "sub_scaled_", "to_backend", "to_float", "to_numpy", "use_backend",
    "_cache", "_constants", "_cupy_unusable_reason", "_parse_device", "_valid_devices",
]
