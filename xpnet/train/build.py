"""One call: a trainer for an MLP on a named dataset (what ``xpnet train`` runs), and ``fit``."""

from __future__ import annotations

import os

import numpy as np

from .. import checkpoint as ckpt
from ..checks import size_arg
from ..errors import ConfigError
from ..model import mlp
from ..optimizers import get_optimizer
from .history import History
from .trainer import Trainer

# What ``xpnet train`` does with no arguments (measured: >= 98 % test accuracy on digits).
DEFAULTS = {
    "dataset": "digits",
    "hidden": (256,),
    "activation": "relu",
    "optimizer": "adam",
    "lr": 0.002,
    "epochs": 40,
    "batch_size": 64,
    "seed": 0,
    "scale": "minmax",
    "weight_decay": 0.0,
}


# ---------------------------------------------------------------------- one call
# What a checkpoint fixes for good: a resumed run may not change it (a message says so).
FIXED_ON_RESUME = ("dataset", "hidden", "activation", "optimizer", "scale", "seed")


def build(dataset: str | None = None, hidden=None, activation: str | None = None, optimizer: str | None = None,
          lr: float | None = None, batch_size: int | None = None, seed: int | None = None, backend=None,
          device: str | None = None, dtype: str | None = None, out=None, scale: str | None = None,
          weight_decay: float | None = None, patience: int | None = None, data_dir=None, resume=None,
          **trainer_options) -> Trainer:
    """A :class:`Trainer` for an MLP on a named dataset (what ``xpnet train`` runs).

    Options left as None take :data:`DEFAULTS`; ``lr`` defaults to 0.002 for Adam and 0.1
    for the SGD family. With ``resume`` (a checkpoint path) the model, optimizer and
    shuffle state come from the file: ``lr``, ``weight_decay``, ``batch_size``, ``dtype``,
    ``backend`` and ``device`` given with it are honoured; ``dataset``, ``hidden``,
    ``activation``, ``optimizer``, ``scale`` and ``seed`` are fixed by the checkpoint, and
    giving a different value is a :class:`~xpnet.errors.ConfigError`.

    Started by an MPI launcher (``mpiexec -n N``), the trainer is one of N data-parallel ranks
    (``comm=None`` turns that off): ``batch_size`` is the global batch and must divide by N, and
    each rank takes the GPU of its local rank unless ``device`` or ``XPNET_DEVICE`` says otherwise.
    """
    from .. import datasets

    given = {"dataset": dataset, "hidden": hidden, "activation": activation, "optimizer": optimizer,
             "scale": scale, "seed": seed}
    if resume is not None:
        given = _with_checkpoint_settings(given, resume)
    seed = size_arg("seed", DEFAULTS["seed"] if given["seed"] is None else given["seed"], least=0)
    scale = given["scale"] or DEFAULTS["scale"]
    data = datasets.load(given["dataset"] or DEFAULTS["dataset"], scale=scale, seed=seed, data_dir=data_dir)
    meta = {"dataset": data.name, "scaler": data.scaler.to_json(), "class_names": data.class_names,
            "num_features": data.num_features, "num_classes": data.num_classes}
    opts = {"out": out, "patience": patience, "meta": meta, **trainer_options}
    if "comm" not in opts:  # started by mpiexec: one rank of a data-parallel job
        from ..parallel import world

        opts["comm"] = world()
    if opts["comm"] is not None and device is None and not os.environ.get("XPNET_DEVICE"):
        from ..backend import resolve
        from ..parallel import gpu_device

        device = gpu_device(resolve(backend, None, dtype), opts["comm"].local_rank)
    if batch_size is not None:
        opts["batch_size"] = batch_size
    if resume is not None:
        return Trainer.resume(resume, data, backend=backend, device=device, dtype=dtype, lr=lr,
                              weight_decay=weight_decay, **opts)
    hidden = _hidden_list(DEFAULTS["hidden"] if hidden is None else hidden)
    activation = DEFAULTS["activation"] if activation is None else activation
    optimizer = DEFAULTS["optimizer"] if optimizer is None else optimizer
    model = mlp([data.num_features, *hidden, data.num_classes], activation, seed=seed, backend=backend,
                device=device, dtype=dtype)
    if lr is None:
        lr = DEFAULTS["lr"] if str(optimizer).lower() == "adam" else 0.1
    opt = get_optimizer(optimizer, lr, weight_decay=DEFAULTS["weight_decay"] if weight_decay is None else weight_decay)
    meta.update(hidden=hidden, activation=str(activation).lower(), optimizer=str(optimizer).lower(), lr=float(lr),
                scale=scale)
    opts.setdefault("batch_size", DEFAULTS["batch_size"])
    return Trainer(model, opt, data, seed=seed, **opts)


def _with_checkpoint_settings(given: dict, resume) -> dict:
    """``given`` with what checkpoint ``resume`` fixes filled in; a different value is refused."""
    fixed = _fixed_by_checkpoint(ckpt.describe_file(resume))
    for name, value in given.items():
        if value is None:
            continue
        if name == "hidden":
            value = _hidden_list(value)
        elif isinstance(value, str):
            value = value.lower()
        if name not in fixed or value != fixed[name]:
            was = f" (it was trained with {fixed[name]!r})" if name in fixed else ""
            raise ConfigError(
                f"{name}={value!r} cannot be changed when resuming {os.fspath(resume)!r}{was}: the checkpoint "
                f"fixes it. Leave it out to continue, or start a new run without --resume"
            )
    return {**given, **{k: v for k, v in fixed.items() if given.get(k) is None}}


def _hidden_list(hidden) -> list:
    sizes = list(hidden) if isinstance(hidden, (list, tuple)) else [hidden]
    if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in sizes):
        raise ConfigError(f"hidden layer sizes must be positive integers, got {hidden!r}")
    return [int(h) for h in sizes]


def _fixed_by_checkpoint(desc: dict) -> dict:
    """The run settings a checkpoint fixes (from its meta and its layer list)."""
    meta = desc.get("meta") or {}
    fixed = {k: meta[k] for k in ("dataset", "activation", "optimizer", "seed") if k in meta}
    if "hidden" in meta:
        fixed["hidden"] = list(meta["hidden"])
    kind = (meta.get("scaler") or {}).get("kind")
    if meta.get("scale") or kind in ("minmax", "standard"):
        fixed["scale"] = meta.get("scale") or kind
    if desc.get("optimizer"):
        fixed["optimizer"] = desc["optimizer"]["name"]
    return fixed


def fit(dataset: str = DEFAULTS["dataset"], epochs: int = DEFAULTS["epochs"], **options) -> History:
    """Train an MLP on a named dataset and return the :class:`History` (see :func:`build`).

    The trained model is ``history.trainer.model``.
    """
    trainer = build(dataset, **options)
    history = trainer.fit(epochs)
    history.trainer = trainer
    return history
