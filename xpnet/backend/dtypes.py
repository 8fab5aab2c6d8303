"""Dtype names across libraries: the float dtypes xpnet computes in, and the NumPy twin of any
library's dtype."""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError

DTYPES = ("float32", "float64")
DEFAULT_DTYPE = "float32"
GENERIC_CAST = "xp.astype(x, xp.float32)"


def host_dtype(dtype) -> np.dtype:
    """The NumPy dtype with the same name as any backend's dtype (torch.float32 -> float32).

    A dtype NumPy lacks (torch's bfloat16 where ml_dtypes is not loaded) raises
    :class:`DTypeError`, with the cast that fixes it."""
    try:
        return np.dtype(dtype)
    except TypeError:
        pass
    name = dtype_name(dtype)
    try:
        return np.dtype(name)
    except TypeError:
        raise unsupported_dtype(name, "converting to a NumPy dtype") from None


_names: dict = {}


def dtype_name(dtype) -> str:
    """The plain name of any backend's dtype, for messages: ``torch.float32`` -> ``float32``.
    Never raises (also for dtypes NumPy lacks, such as torch's bfloat16)."""
    key = (type(dtype), dtype)  # the type first: no cross-library dtype comparison
    name = _names.get(key)
    if name is None:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype).rsplit(".", 1)[-1]
        _names[key] = name
    return name


def unsupported_dtype(name: str, where: str, cast: str | None = None) -> DTypeError:
    """The error for float dtype ``name`` that xpnet does not compute in (float16, bfloat16...);
    ``cast``: the library's own way to cast to float32 (None: the Array API's)."""
    cast = cast or GENERIC_CAST
    also = "" if cast == GENERIC_CAST else f", or {GENERIC_CAST} in any library"
    return DTypeError(f"{where}: dtype {name} is not supported; xpnet computes in float32 or float64 "
                      f"only (not in float16 or bfloat16). Cast it first: {cast}{also}")


def supports_float64(xp, dev) -> bool:
    """Whether namespace ``xp`` lists float64 on device ``dev`` (True when it cannot say)."""
    try:
        return "float64" in xp.__array_namespace_info__().dtypes(device=dev, kind="real floating")
    except (AttributeError, TypeError, ValueError):
        return True
