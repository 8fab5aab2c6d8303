"""The book's ``dataset`` package: :mod:`~xpnet.dlfs1.dataset.mnist` (``load_mnist``, on xpnet's
MNIST loader) and, for machines without MNIST, :func:`load_digits` (xpnet's bundled 8x8 digits in
the same format) and :func:`load_book_data` (MNIST when its files are here, else the digits)."""

from __future__ import annotations

import numpy as np

from ...datasets import digits as _digits
from .mnist import _format, load_mnist, mnist_available


def load_digits(normalize=True, flatten=True, one_hot_label=False):
    """xpnet's bundled UCI digits (1,797 images of 8x8, values 0..16) in ``load_mnist``'s format:
    ``((x_train, t_train), (x_test, t_test))``, pixels divided by 16 when ``normalize``,
    (N, 1, 8, 8) when not ``flatten``. The split is xpnet's fixed stratified one."""
    d = _digits()
    train, test = (np.rint(x).astype(np.uint8) for x in (d.x_train_raw, d.x_test_raw))  # pixel values 0..16
    return (_format(train, d.t_train, (8, 8), 16.0, normalize, flatten, one_hot_label),
            _format(test, d.t_test, (8, 8), 16.0, normalize, flatten, one_hot_label))


def load_book_data(normalize=True, flatten=True, one_hot_label=False, data="auto", data_dir=None):
    """``(name, ((x_train, t_train), (x_test, t_test)))``: ``data='mnist'`` loads MNIST (downloading
    it if needed), ``'digits'`` the bundled digits, ``'auto'`` MNIST when its four files are in the
    data folder, else the digits (nothing is downloaded)."""
    if data == "auto":
        data = "mnist" if mnist_available(data_dir) else "digits"
    if data == "mnist":
        return "mnist", load_mnist(normalize, flatten, one_hot_label, data_dir=data_dir)
    if data == "digits":
        return "digits", load_digits(normalize, flatten, one_hot_label)
    from ...errors import ConfigError

    raise ConfigError(f"data must be 'auto', 'mnist' or 'digits', got {data!r}")


__all__ = ["load_book_data", "load_digits", "load_mnist", "mnist_available", "np"]
