"""One call: a trainer for an MLP or a convolutional network on a named dataset (what ``xpnet train``
runs), and ``fit``."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from .. import checkpoint as ckpt
from ..checks import size_arg
from ..cnn import deep_cnn, simple_cnn
from ..errors import ConfigError
from ..model import mlp
from ..optimizers import get_optimizer
from . import seqbuild
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


MODELS = ("mlp", "simple-cnn", "deep-cnn", *seqbuild.SEQUENCE_MODELS)

# The convolutional networks' settings per image size: the book's for 28x28 (MNIST); for the 8x8 digits
# simple-cnn's filters are 3x3 (a 6x6 map, pooled to 3x3) and deep-cnn keeps the book's pads
# (8 -> pool 4 -> pad 2: 6 -> pool 3 -> pool 1). Adam's rate and the epochs as measured on digits
# (docs/cli.md): simple-cnn 98.61% test accuracy after 20 epochs at lr 0.005, deep-cnn 98.33% after 10 at 0.002.
CNN_OPTIONS = {
    "simple-cnn": {8: {"size": 3}, 28: {"size": 5}},
    "deep-cnn": {8: {}, 28: {}},
}
CNN_DEFAULTS = {"epochs": 20, "lr": {"simple-cnn": 0.005, "deep-cnn": 0.002}}


# ---------------------------------------------------------------------- one call
# What a checkpoint fixes for good: a resumed run may not change it (a message says so).
FIXED_ON_RESUME = ("dataset", "model", "hidden", "activation", "optimizer", "scale", "seed", "reverse")


def build(dataset: str | None = None, hidden=None, activation: str | None = None, optimizer: str | None = None,
          lr: float | None = None, batch_size: int | None = None, seed: int | None = None, backend=None,
          device: str | None = None, dtype: str | None = None, out=None, scale: str | None = None,
          weight_decay: float | None = None, patience: int | None = None, data_dir=None, resume=None,
          model: str | None = None, reverse: bool | None = None, **trainer_options) -> Trainer:
    """A :class:`Trainer` for a model on a named dataset (what ``xpnet train`` runs).

    ``model`` is ``"mlp"`` (the default), ``"simple-cnn"`` or ``"deep-cnn"`` (:data:`MODELS`); the
    convolutional networks take the dataset's images (digits 1x8x8, MNIST 1x28x28) and no
    ``hidden`` or ``activation``. The sequence models ``seq2seq``, ``peeky-seq2seq`` and
    ``attention-seq2seq`` train on the tasks ``addition`` and ``date`` with the book's settings
    (:mod:`xpnet.train.seqbuild`); ``hidden`` is then their one hidden size and ``reverse``
    (default True) reverses the questions.

    Options left as None take :data:`DEFAULTS`; ``lr`` defaults to 0.002 for Adam and 0.1
    for the SGD family. With ``resume`` (a checkpoint path) the model, optimizer and
    shuffle state come from the file: ``lr``, ``weight_decay``, ``batch_size``, ``dtype``,
    ``backend`` and ``device`` given with it are honoured; ``dataset``, ``hidden``,
    ``activation``, ``optimizer``, ``scale``, ``seed`` and ``reverse`` are fixed by the
    checkpoint, and giving a different value is a :class:`~xpnet.errors.ConfigError`.

    Started by an MPI launcher (``mpiexec -n N``), the trainer is one of N data-parallel ranks
    (``comm=None`` turns that off): ``batch_size`` is the global batch and must divide by N, and
    each rank takes the GPU of its local rank unless ``device`` or ``XPNET_DEVICE`` says otherwise.
    """
    given = {"dataset": dataset, "model": model, "hidden": hidden, "activation": activation,
             "optimizer": optimizer, "scale": scale, "seed": seed, "reverse": reverse}
    if resume is not None:
        given = _with_checkpoint_settings(given, resume)
    kind = _model_kind(given)
    sequence = kind in seqbuild.SEQUENCE_MODELS
    if sequence and given["hidden"] is not None:
        given["hidden"] = _hidden_list(given["hidden"])
    seed = size_arg("seed", DEFAULTS["seed"] if given["seed"] is None else given["seed"], least=0)
    data, meta = seqbuild.load_task(given, data_dir) if sequence else _classes(given, kind, seed, data_dir)
    opts = {"out": out, "patience": patience, "meta": meta, **trainer_options}
    device = _rank_setup(opts, backend, device, dtype)
    if batch_size is not None:
        opts["batch_size"] = batch_size
    if resume is not None:
        return Trainer.resume(resume, data, backend=backend, device=device, dtype=dtype, lr=lr,
                              weight_decay=weight_decay, **opts)
    defaults = seqbuild.defaults(kind) if sequence else DEFAULTS
    optimizer = defaults["optimizer"] if optimizer is None else optimizer
    if sequence:
        net = seqbuild.new_model(kind, data, given, seed, backend, device, dtype, meta)
    else:
        net = _classifier(kind, data, given, seed, backend, device, dtype, meta)
    if lr is None:
        lr = _default_lr(kind, str(optimizer).lower(), defaults if sequence else None)
    clip = defaults["clip_norm"] if sequence else 0.0
    opt = get_optimizer(optimizer, lr, weight_decay=DEFAULTS["weight_decay"] if weight_decay is None else weight_decay,
                        clip_norm=clip)
    meta.update(optimizer=str(optimizer).lower(), lr=float(lr))
    if not sequence:
        meta["scale"] = given["scale"] or DEFAULTS["scale"]
    opts.setdefault("batch_size", defaults["batch_size"])
    return Trainer(net, opt, data, seed=seed, **opts)


def _default_lr(kind: str, optimizer: str, sequence_defaults: dict | None) -> float:
    """A sequence model: the book's rate for its optimizer (xpnet's usual ones for another); else
    Adam's measured rate per model, 0.1 for the SGD family."""
    if sequence_defaults is not None and optimizer == sequence_defaults["optimizer"]:
        return sequence_defaults["lr"]
    if optimizer != "adam":
        return 0.1
    return 0.001 if sequence_defaults is not None else CNN_DEFAULTS["lr"].get(kind, DEFAULTS["lr"])


def default_epochs(meta: dict) -> int:
    """The epochs ``xpnet train`` runs when none are given, for a run of ``meta``."""
    kind = meta.get("model", "mlp")
    if kind in seqbuild.SEQUENCE_MODELS:
        return seqbuild.default_epochs(meta)
    return (CNN_DEFAULTS if kind != "mlp" else DEFAULTS)["epochs"]


def _classes(given: dict, kind: str, seed: int, data_dir) -> tuple:
    """``(data, meta)`` of a classification dataset, as images for a convolutional network."""
    from .. import datasets

    scale = given["scale"] or DEFAULTS["scale"]
    data = datasets.load(given["dataset"] or DEFAULTS["dataset"], scale=scale, seed=seed, data_dir=data_dir)
    meta = {"dataset": data.name, "scaler": data.scaler.to_json(), "class_names": data.class_names,
            "num_features": data.num_features, "num_classes": data.num_classes}
    if kind != "mlp":
        data = _as_images(data, kind)
        meta["model"] = kind
    return data, meta


def _rank_setup(opts: dict, backend, device, dtype):
    """Under an MPI launcher (``mpiexec -n N``): the communicator in ``opts`` and this rank's GPU
    (unless ``device`` or ``XPNET_DEVICE`` says otherwise); returns the device."""
    if "comm" not in opts:  # started by mpiexec: one rank of a data-parallel job
        from ..parallel import world

        opts["comm"] = world()
    if opts["comm"] is not None and device is None and not os.environ.get("XPNET_DEVICE"):
        from ..backend import resolve
        from ..parallel import gpu_device

        device = gpu_device(resolve(backend, None, dtype), opts["comm"].local_rank)
    return device


def _classifier(kind: str, data, given: dict, seed: int, backend, device, dtype, meta: dict):
    """A new MLP or convolutional network for ``data``."""
    if kind == "mlp":
        hidden = _hidden_list(DEFAULTS["hidden"] if given["hidden"] is None else given["hidden"])
        activation = DEFAULTS["activation"] if given["activation"] is None else given["activation"]
        meta.update(hidden=hidden, activation=str(activation).lower())
        return mlp([data.num_features, *hidden, data.num_classes], activation, seed=seed, backend=backend,
                   device=device, dtype=dtype)
    build_cnn = simple_cnn if kind == "simple-cnn" else deep_cnn
    options = CNN_OPTIONS[kind].get(data.image_shape[-1], {})
    return build_cnn(data.image_shape, classes=data.num_classes, seed=seed, backend=backend, device=device,
                     dtype=dtype, **options)


def _model_kind(given: dict) -> str:
    """The model named in ``given`` (default mlp); a CNN given MLP-only settings is refused."""
    kind = str(given.get("model") or "mlp").lower()
    if kind not in MODELS:
        raise ConfigError(f"unknown model {given['model']!r}; valid models: {', '.join(MODELS)}")
    seqbuild.check_given(kind, {**given, "hidden": None if given.get("hidden") is None
                                else _hidden_list(given["hidden"])})
    if kind in seqbuild.SEQUENCE_MODELS:
        return kind
    if kind != "mlp":
        extra = [name for name in ("hidden", "activation") if given.get(name) is not None]
        if extra:
            verb = "apply" if len(extra) > 1 else "applies"
            raise ConfigError(f"{' and '.join(extra)} {verb} to the mlp model only; {kind} has fixed layers "
                              f"(see docs/cli.md): leave {', '.join(extra)} out")
    return kind


def _as_images(data, kind: str):
    """``data`` with its scaled features in image shape (N, C, H, W), for a convolutional network."""
    shape = getattr(data, "image_shape", None)
    if shape is None:
        raise ConfigError(f"{kind} takes images, and dataset {data.name!r} has flat features; use digits, mnist or "
                          f"fashion-mnist, or --model mlp")
    return dataclasses.replace(data, x_train=data.x_train.reshape(-1, *shape),
                               x_test=data.x_test.reshape(-1, *shape))


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
    fixed = {k: meta[k] for k in ("dataset", "activation", "optimizer", "seed", "reverse") if k in meta}
    fixed["model"] = meta.get("model", "mlp")
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
