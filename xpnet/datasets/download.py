"""MNIST and Fashion-MNIST: find the IDX files locally, or download, verify and cache them.

Where files are looked for, in order: ``data_dir`` (the ``--data-dir`` option), then
``$XPNET_DATA_DIR``, then ``~/.cache/xpnet``; in the folder itself and in its ``<variant>/``
sub-folder, gzipped (``train-images-idx3-ubyte.gz``) or not. Files found there are
trusted (their IDX structure is still checked). A missing file is downloaded into
``<dir>/<variant>/`` from each mirror in turn; the bytes go to a temporary file in the
same folder, their SHA-256 is compared with the expected digest, and only a verified file
is renamed into place, so the cache never holds a partial or corrupted file.

The SHA-256 digests below are the ones published for the original archives (cross-checked
in several independent public projects); they were not re-computed by downloading here.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..atomic import atomic_file
from ..errors import DataError
from .idx import read as read_idx

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
}

MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}

INFO = {
    "mnist": "MNIST handwritten digits (LeCun, Cortes, Burges), 28x28",
    "fashion-mnist": "Fashion-MNIST (Xiao, Rasul, Vollgraf; Zalando Research, MIT licence), 28x28",
}
CLASS_NAMES = {
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}
ENV_DIR = "XPNET_DATA_DIR"
CHUNK = 1 << 16


def default_dir() -> Path:
    """``$XPNET_DATA_DIR`` or ``~/.cache/xpnet``."""
    env = os.environ.get(ENV_DIR, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "xpnet"


def data_folder(data_dir=None) -> Path:
    """The folder ``data_dir`` (or the default one), refused when it names a file or nothing."""
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise DataError(f"the data folder must be a path (str or pathlib.Path), got {type(data_dir).__name__}")
    if data_dir is not None and not os.fspath(data_dir).strip():
        raise DataError(f"the data folder is an empty string; pass a folder path, or leave it out for {default_dir()}")
    folder = Path(data_dir).expanduser() if data_dir is not None else default_dir()
    if folder.exists() and not folder.is_dir():
        source = "--data-dir / data_dir" if data_dir is not None else f"${ENV_DIR}"
        raise DataError(
            f"the data folder {os.fspath(folder)!r} ({source}) is a file; expected a folder that holds the "
            f"data files (MNIST, PTB, ...) or can cache the downloads (e.g. {os.fspath(folder.parent)!r})"
        )
    return folder


def _find_local(folder: Path, variant: str, filename: str) -> Path | None:
    for base in (folder, folder / variant):
        for name in (filename, filename.removesuffix(".gz")):
            p = base / name
            if p.is_file():
                return p
    return None


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, sha256: str | None, timeout: float = 30.0, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically, checking the SHA-256 (and the MD5, for a file
    whose published digest is an MD5 only) when one is given.

    The bytes are written to a temporary file next to ``dest``, flushed to disk, checked,
    then renamed onto ``dest``; on any failure the temporary file is removed and
    :class:`DataError` says what went wrong.
    """
    dest = Path(dest)
    with atomic_file(dest, suffix=".part") as out:
        h = hashlib.sha256()
        h5 = hashlib.md5(usedforsecurity=False) if md5 is not None else None
        got = 0
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                expected = resp.headers.get("Content-Length")
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    if h5 is not None:
                        h5.update(block)
                    got += len(block)
        except http.client.IncompleteRead as e:
            raise DataError(f"{url}: the download was cut short after {got + len(e.partial)} bytes ({e})") from e
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:  # ValueError: a bad URL
            reason = getattr(e, "reason", None) or e
            raise DataError(f"{url}: download failed ({reason})") from e
        if expected is not None and got != int(expected):
            raise DataError(f"{url}: the download was cut short: got {got} of {expected} bytes")
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise DataError(
                f"{url}: SHA-256 mismatch: expected {sha256}, got {digest} "
                f"({got} bytes); the file is corrupted or not the expected one"
            )
        if h5 is not None and h5.hexdigest() != md5.lower():
            raise DataError(
                f"{url}: MD5 mismatch: expected {md5}, got {h5.hexdigest()} "
                f"({got} bytes); the file is corrupted or not the expected one"
            )
    return dest


def fetch(
    filename: str,
    variant: str = "mnist",
    data_dir=None,
    download_missing: bool = True,
    mirrors=None,
    sha256: str | None = None,
    timeout: float = 30.0,
    md5: str | None = None,
    hint: str | None = None,
) -> Path:
    """The local path of ``filename`` of ``variant``, downloading it into the cache if missing.

    ``mirrors`` (base URLs) and ``sha256`` default to the known ones for ``variant``; ``md5``
    is checked too when given; ``hint`` ends the offline error (what to copy where).
    """
    folder = data_folder(data_dir)
    found = _find_local(folder, variant, filename)
    if found is not None:
        return found
    if not download_missing:
        raise DataError(
            f"{variant} file {filename} not found in {folder} (or {folder / variant}); "
            f"put a copy there, point --data-dir / ${ENV_DIR} at one, or allow the download"
        )
    mirrors = list(mirrors if mirrors is not None else MIRRORS.get(variant, []))
    if sha256 is None:
        sha256 = SHA256.get(variant, {}).get(filename)
    dest = folder / variant / filename
    errors = []
    for base in mirrors:
        try:
            return download(base.rstrip("/") + "/" + filename, dest, sha256, timeout, md5=md5)
        except DataError as e:
            errors.append(str(e))
    tried = "\n  ".join(errors) or "no mirrors were given"
    hint = hint or f"Offline? Copy the four IDX files into a folder and pass --data-dir FOLDER (or set ${ENV_DIR})."
    raise DataError(f"could not download {variant} file {filename} into {dest.parent}; tried:\n  {tried}\n{hint}")


def load_arrays(
    variant: str = "mnist", data_dir=None, download: bool = True, mirrors=None, digests: dict | None = None
) -> dict:
    """The four arrays (``train_images`` (N, 28, 28) uint8, ``train_labels``, ...) of ``variant``."""
    if variant not in MIRRORS:
        raise DataError(f"unknown IDX dataset {variant!r}; valid: {', '.join(MIRRORS)}")
    out = {}
    for key, filename in FILES.items():
        sha = (digests or {}).get(filename)
        path = fetch(filename, variant, data_dir, download, mirrors, sha)
        out[key] = read_idx(path)
    for part in ("train", "test"):
        images, labels = out[f"{part}_images"], out[f"{part}_labels"]
        if images.ndim != 3 or images.shape[0] == 0:
            raise DataError(
                f"{variant} {FILES[part + '_images']} holds an array of shape {images.shape}; "
                f"expected a non-empty stack of images (N, rows, columns)"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{variant} {part} files disagree: {images.shape[0]} images but labels of shape "
                f"{labels.shape}; expected one label per image (shape ({images.shape[0]},))"
            )
        if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= 10:
            raise DataError(
                f"{variant} {FILES[part + '_labels']} holds {labels.dtype} labels from {labels.min()} to "
                f"{labels.max()}; expected integer classes 0..9"
            )
    a, b = out["train_images"].shape[1:], out["test_images"].shape[1:]
    if a != b:
        raise DataError(
            f"{variant} train and test images differ in size: {a[0]}x{a[1]} (train) vs {b[0]}x{b[1]} (test); "
            f"the four files must come from the same dataset"
        )
    return out
