"""The book's ``dataset/mnist.py``: ``load_mnist(normalize=True, flatten=True, one_hot_label=False)``.

The four IDX files are found as ``xpnet train --dataset mnist`` finds them (``data_dir``, else
``$XPNET_DATA_DIR``, else ``~/.cache/xpnet``; directly there or under ``mnist/``), else downloaded
and checked against their SHA-256. Results are host NumPy arrays, as in the book: images float32
divided by 255 when ``normalize`` (else uint8), (N, 784) or (N, 1, 28, 28); labels int64 (the
book's are uint8, which torch would read as a mask) or float32 one-hot rows.
"""

from __future__ import annotations

import os

import numpy as np

from ...datasets import download as _download
from ...errors import DataError


def _format(x, t, hw, peak, normalize, flatten, one_hot_label):
    x = np.asarray(x)
    x = x.astype(np.float32) / np.float32(peak) if normalize else x.astype(np.uint8)
    x = x.reshape(x.shape[0], -1) if flatten else x.reshape(x.shape[0], 1, *hw)
    t = np.asarray(t).astype(np.int64)
    if one_hot_label:
        t = np.eye(10, dtype=np.float32)[t]
    return x, t


def mnist_available(data_dir=None) -> bool:
    """True when the four MNIST files are in the data folder (nothing to download)."""
    folder = _download.data_folder(data_dir)
    return all(_download._find_local(folder, "mnist", f) is not None for f in _download.FILES.values())


def _first_reason(e: DataError) -> str:
    """The first mirror's failure in the downloader's error (its lines after "tried:"), else its first line."""
    lines = [line.strip() for line in str(e).splitlines()]
    return lines[1] if len(lines) > 1 and lines[0].endswith("tried:") else lines[0]


def load_mnist(normalize=True, flatten=True, one_hot_label=False, data_dir=None):
    """``((x_train, t_train), (x_test, t_test))``: 60,000 and 10,000 MNIST images as host NumPy."""
    try:
        arrays = _download.load_arrays("mnist", data_dir=data_dir, download=True)
    except DataError as e:
        folder = _download.data_folder(data_dir)
        files = ", ".join(_download.FILES.values())
        raise DataError(
            f"load_mnist: MNIST is not in {os.fspath(folder)} (nor {os.fspath(folder / 'mnist')}) and could not be "
            f"downloaded. Copy the four files {files} into that folder, or point data_dir / "
            f"${_download.ENV_DIR} at a folder that has them. (The download: {_first_reason(e)})"
        ) from None
    hw = arrays["train_images"].shape[1:]
    return (_format(arrays["train_images"], arrays["train_labels"], hw, 255.0, normalize, flatten, one_hot_label),
            _format(arrays["test_images"], arrays["test_labels"], hw, 255.0, normalize, flatten, one_hot_label))
