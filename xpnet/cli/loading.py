"""What ``xpnet eval`` and ``xpnet predict`` share: a checkpoint loaded and checked for use, and
the dataset it is evaluated on."""

from __future__ import annotations

from ..checks import is_int
from ..errors import CheckpointError, ConfigError, DataError


def load_for_use(args):
    """``(model, meta)`` of the checkpoint, with what eval and predict read from ``meta`` checked:
    ``meta["features"]``/``meta["classes"]`` are set to the model's input and output widths."""
    from .. import checkpoint as C
    from ..datasets import Scaler
    from ..losses import SoftmaxWithLoss

    model, _, meta = C.load(args.checkpoint, backend=args.backend, device=args.device, dtype=args.dtype)
    where = f"checkpoint {args.checkpoint!r}"
    if getattr(model, "takes_ids", False):  # a sequence model: see xpnet.cli.sequence
        return model, meta
    if not model.weight_matrices():
        raise ConfigError(f"{where} holds a model without weight matrices; eval and predict need a classifier")
    features, classes = model.in_features, model.out_features
    if type(model.loss_layer) is not SoftmaxWithLoss:
        raise ConfigError(
            f"{where} was trained with {type(model.loss_layer).__name__}; eval and predict report classes "
            f"and probabilities of a SoftmaxWithLoss classifier (what xpnet train writes)"
        )
    seed = meta.get("seed")
    if seed is not None and not is_int(seed, 0):
        raise CheckpointError(f"{where}: its meta seed is {seed!r}; expected a non-negative integer")
    names = meta.get("class_names")
    if names is not None and (
        not isinstance(names, list) or len(names) != classes or not all(isinstance(n, str) for n in names)
    ):
        raise CheckpointError(
            f"{where}: its class_names are {str(names)[:80]}; expected a list of {classes} strings, "
            f"one per output of the model"
        )
    if "scaler" in meta:
        try:
            meta["scaler"] = Scaler.from_json(meta["scaler"], features)
        except DataError as e:
            raise CheckpointError(f"{where}: {e}") from None
    return model, {**meta, "features": features, "classes": classes}


def dataset_for(args, meta, name: str | None):
    """The dataset ``name`` (default: the one the checkpoint was trained on), checked to fit the model."""
    from .. import datasets

    where = f"checkpoint {args.checkpoint!r}"
    trained_on = meta.get("dataset")
    name = name or trained_on
    if name is None:
        raise ConfigError(f"{where} does not say which dataset it was trained on; pass --dataset")
    if name not in datasets.NAMES:
        raise CheckpointError(
            f"{where} names the dataset {name!r}, which this xpnet does not know; "
            f"pass --dataset with one of {', '.join(datasets.NAMES)}"
        )
    scaler = meta.get("scaler")
    kind = scaler.kind if scaler is not None and scaler.kind in datasets.SCALES else "minmax"
    data = datasets.load(name, scale=kind, seed=meta.get("seed"), data_dir=args.data_dir)
    features, classes = meta["features"], meta["classes"]
    if (data.num_features, data.num_classes) != (features, classes):
        model = (
            f"was trained on {trained_on} ({features} features, {classes} classes)"
            if isinstance(trained_on, str) and trained_on != name
            else f"holds a model of {features} features and {classes} classes"
        )
        fix = f"evaluate it on {trained_on} (leave out --dataset)" if trained_on in datasets.NAMES else "pick another"
        raise ConfigError(
            f"{where} {model}; {name} has {data.num_features} features and {data.num_classes} classes; "
            f"{fix}, or use a checkpoint trained on {name}"
        )
    return data
