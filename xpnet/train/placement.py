"""The data a trainer trains on: moved once to the model's device and dtype and checked once
(features finite and of a float dtype, labels in range), so the steps never check again."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..backend import backend_name, check_same_backend, from_host_like, host_dtype
from ..errors import BackendMismatchError, ConfigError, DTypeError, LabelError, NonFiniteError


def place(model, data) -> tuple:
    """``(x_train, t_train, x_test, t_test, host_labels)`` on ``model``'s device: ``data`` is a
    host Dataset (moved and cast once; its labels are checked on the host copies, so no device
    reduction, each one a compile on jax, is spent on them) or a tuple of arrays already there."""
    ref = model.reference_array
    ids = getattr(model, "takes_ids", False)  # a sequence model: word ids in and out
    if hasattr(data, "x_train"):
        check_fits(model, data)
        host = {"training labels": np.asarray(data.t_train), "test labels": np.asarray(data.t_test)}
        placed = [_put(data.x_train, "training features", ref, ids), _put(data.t_train, "training labels", ref),
                  _put(data.x_test, "test features", ref, ids), _put(data.t_test, "test labels", ref)]
        if ids:
            placed[:2] = model.check_pair(*placed[:2])
            placed[2:] = model.check_pair(*placed[2:])
        return (*placed, host)
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 4):
        raise ConfigError("data must be a Dataset or a tuple (x_train, t_train[, x_test, t_test]) of arrays, "
                          f"got {type(data).__name__}")
    x_train, t_train, *rest = data
    x_test, t_test = (list(rest) + [None, None])[:2]
    if (x_test is None) != (t_test is None):
        raise ConfigError("x_test and t_test must be given together (or both None)")
    for what, a in (("training features", x_train), ("training labels", t_train),
                    ("test features", x_test), ("test labels", t_test)):
        if a is not None:
            if not hasattr(a, "shape") or not hasattr(a, "dtype"):
                raise BackendMismatchError(
                    f"{what}: expected an array on the model's backend and device, got {type(a).__name__}; "
                    f"convert it first, e.g. xpnet.to_backend(numpy.asarray(...), {backend_name(ref)!r})"
                )
            check_same_backend(a, ref, what)
    if ids:
        x_train, t_train = model.check_pair(x_train, t_train)
        if x_test is not None:
            x_test, t_test = model.check_pair(x_test, t_test)
        return x_train, t_train, x_test, t_test, {}
    x_train = model.check_input(x_train, "training features")
    if x_test is not None:
        x_test = model.check_input(x_test, "test features")
    return x_train, t_train, x_test, t_test, {}


def _put(a, what: str, ref, ids: bool = False):
    a = np.asarray(a)
    if ids or what.endswith("labels"):
        if a.dtype.kind not in "iub":
            kind = "word ids" if ids or a.ndim == 2 else "class indices"
            raise LabelError(f"{what}: expected integer {kind}, got dtype {a.dtype}")
        return from_host_like(a.astype(np.int64), ref)
    if a.dtype.kind != "f":
        raise DTypeError(f"{what}: expected floating-point features, got dtype {a.dtype}")
    dt = host_dtype(ref.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = a.astype(dt)
    if not np.isfinite(cast).all():
        bad = int((~np.isfinite(cast)).sum())
        why = "NaN or inf" if not np.isfinite(a).all() else f"values too large for {dt.name}"
        raise NonFiniteError(f"{what}: {bad} value(s) are {why} (largest finite {dt.name}: "
                             f"{np.finfo(dt).max:.3g}); clean or rescale the data")
    return from_host_like(cast, ref)


def check_fits(model, data) -> None:
    """A dataset whose width or class count does not fit the model, named as such."""
    n_in, n_out = model.in_features, model.out_features
    features = int(np.prod(np.shape(data.x_train)[1:]))
    classes = getattr(data, "num_classes", None)
    fits_out = n_out is None or classes is None or n_out == classes or (n_out == 1 and classes == 2)
    if (n_in is not None and n_in != features) or not fits_out:
        raise ConfigError(
            f"the model takes {n_in if n_in is not None else '?'} features and gives {n_out} "
            f"outputs, but dataset {getattr(data, 'name', '?')!r} has {features} features and {classes} "
            "classes; train a new model for it, or resume on the dataset the checkpoint was trained on"
        )


def check_labels(model, sets, host: dict) -> None:
    """Every label set ``(where, t, x)`` valid for the model's outputs (from ``host`` copies when
    there are some): checked once here, so the steps skip the check (a sync each)."""
    n_out = model.out_features
    if n_out is None:
        return
    for where, t, x in sets:
        t = host.get(where, t)
        if n_out == 1:  # a binary model: one score per sample, targets 0/1 (or probabilities)
            F.check_binary_labels(t, x.shape[0], soft=True, where=where)
        else:
            F.check_labels(t, n_out, x.shape[0], where=where)


def check_lr(optimizer, model) -> None:
    """Refuse a learning rate too small to change any weight of the model's dtype (an exact no-op)."""
    dt = host_dtype(model.dtype)
    floor = 1e-3 * float(np.finfo(dt).eps)
    if optimizer.lr < floor:
        raise ConfigError(
            f"learning rate {optimizer.lr:g} is too small for {dt.name} weights: lr * gradient is below the "
            f"rounding step of every weight larger than 1e-3, so training would change nothing; use a "
            f"learning rate of at least {floor:.1e}"
        )
