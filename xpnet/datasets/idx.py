"""Read and write IDX files, the format of MNIST and Fashion-MNIST (optionally gzipped).

An IDX file is: two zero bytes, a type code (0x08 unsigned byte, 0x09 signed byte,
0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, each
dimension as a big-endian uint32, then the values in big-endian C order.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from ..errors import DataError

TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CODES = {np.dtype(v).newbyteorder("=").str.lstrip("<>|="): k for k, v in TYPES.items()}


def parse(data: bytes, where: str = "IDX data") -> np.ndarray:
    """The array stored in IDX bytes (gzipped or not), in native byte order."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{where}: the gzip stream is corrupted or truncated ({e})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{where}: not an IDX file (expected the magic bytes 00 00 <type> <ndim>, "
            f"got {data[:4].hex(' ') or 'an empty file'})"
        )
    code, ndim = data[2], data[3]
    if code not in TYPES:
        raise DataError(
            f"{where}: unknown IDX type code 0x{code:02X}; expected one of "
            f"{', '.join(f'0x{c:02X}' for c in TYPES)}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where}: truncated header ({len(data)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(TYPES[code])
    need = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != need:
        raise DataError(
            f"{where}: the header announces shape {shape} ({need} bytes in all), "
            f"but the file has {len(data)} bytes; it is truncated or corrupted"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read(path) -> np.ndarray:
    """The array in IDX file ``path`` (``.gz`` or plain)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"cannot read IDX file {os.fspath(path)!r}: {e}") from e
    return parse(data, where=os.fspath(path))


def encode(a: np.ndarray) -> bytes:
    """IDX bytes for array ``a`` (uint8, int8, int16, int32, float32 or float64)."""
    a = np.asarray(a)
    key = a.dtype.str.lstrip("<>|=")
    if key not in CODES:
        raise DataError(
            f"IDX cannot store dtype {a.dtype}; use one of uint8, int8, int16, int32, float32, float64"
        )
    code = CODES[key]
    head = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, ">u4").tobytes()
    return head + a.astype(TYPES[code]).tobytes()


def write(path, a: np.ndarray) -> None:
    """Write ``a`` as an IDX file; gzipped when ``path`` ends with ``.gz``."""
    data = encode(a)
    if os.fspath(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
