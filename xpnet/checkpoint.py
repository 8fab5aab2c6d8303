"""Checkpoints that travel: one ``.npz`` of plain arrays plus a JSON description, no pickle.

File layout (a NumPy ``.npz`` zip):

- ``__xpnet__``: the JSON description as uint8 bytes: format name and version, xpnet
  version, the layer list (type, config, parameter shapes), the loss, the float dtype,
  the optimizer (name, hyper-parameters, step count) and the caller's ``meta`` (seed,
  dataset, epoch, history, shuffle-generator state...);
- ``param/W1``, ``param/b1``...: the weights, under the keys of ``model.params``;
- ``state/running_mean1``...: non-trained state (BatchNorm running statistics);
- ``opt/<slot>/<key>``: the optimizer's per-parameter state (Adam's ``m`` and ``v``...).

Arrays are copied to the host exactly (float64 stays bit-identical) and can be loaded onto
any backend and device. Files are written atomically (:mod:`xpnet.atomic`): to a temporary
file in the same folder, flushed and fsync'ed, then renamed over the target, so a crash never
leaves a half-written checkpoint; a new file gets the mode ``open(path, "w")`` would give it.
Loading checks everything before building anything: the description against a schema (every
key, type and range: ``layers[2].config.ratio is 'x' (type str); expected a number in [0, 1)``;
each layer type's fields, shapes and constructor come from :mod:`xpnet.registry`), then every
array's presence, shape and dtype. A ``.safetensors`` checkpoint (:mod:`xpnet.safetensors_io`)
is read and checked the same way. A corrupted, truncated, hand-edited or foreign
file raises :class:`~xpnet.errors.CheckpointError` and no model.
"""

from __future__ import annotations

import inspect
import io
import json
import os
from pathlib import Path

import numpy as np

from . import schema as S
from .atomic import atomic_file, write_atomic  # noqa: F401 (atomic_file: part of this module's API)
from .backend import DTYPES, Backend, host_dtype, resolve, to_numpy
from .errors import BackendError, CheckpointError, ConfigError, ShapeError
from .lm import MODELS as LM_MODELS
from .losses import LOSSES
from .model import Sequential
from .optimizers import OPTIMIZERS, Optimizer
from .registry import LAYER_TYPES, numbered
from .safetensors_io import is_safetensors, read_safetensors
from .schema import META_KEY
from .seq2seq import MODELS as SEQ2SEQ_MODELS
from .sequence import TimeSoftmaxWithLoss

FORMAT = "xpnet-checkpoint"
FORMAT_VERSION = 1

_LOSSES = {cls.__name__: cls for cls in (*LOSSES.values(), TimeSoftmaxWithLoss)}
SEQUENCE_MODELS = {**SEQ2SEQ_MODELS, **LM_MODELS}  # models that are not a chain: rebuilt by their class


# ---------------------------------------------------------------------- save
def _optimizer_name(opt: Optimizer) -> str:
    for name, cls in OPTIMIZERS.items():
        if type(opt) is cls:
            return name
    raise CheckpointError(
        f"cannot save optimizer {type(opt).__name__}: only {', '.join(OPTIMIZERS)} are known"
    )


def _optimizer_config(opt: Optimizer) -> dict:
    return {k: float(v) for k, v in opt.config().items()}


def describe(model: Sequential, optimizer: Optimizer | None = None, meta: dict | None = None) -> dict:
    """The JSON description stored in a checkpoint."""
    from . import __version__

    if meta is not None and not isinstance(meta, dict):
        raise ConfigError(f"checkpoint meta must be a dict of JSON values, got {type(meta).__name__}")
    layers = model.describe()
    for entry in layers:
        if entry["type"] not in LAYER_TYPES:
            raise CheckpointError(f"cannot save layer {entry['type']}: only {', '.join(LAYER_TYPES)} are known")
    if type(model.loss_layer).__name__ not in _LOSSES:
        raise CheckpointError(
            f"cannot save loss {type(model.loss_layer).__name__}: only {', '.join(_LOSSES)} are known"
        )
    if getattr(model.loss_layer, "ignore_label", -1) != -1:
        raise CheckpointError(f"cannot save a TimeSoftmaxWithLoss with ignore_label={model.loss_layer.ignore_label}: "
                              "checkpoints keep the default -1 only")
    kind = None if isinstance(model, Sequential) else getattr(model, "kind", None)
    if not isinstance(model, Sequential) and SEQUENCE_MODELS.get(kind) is not type(model):
        raise CheckpointError(f"cannot save a {type(model).__name__}: checkpoints hold an xpnet.Sequential or one "
                              f"of the sequence models {', '.join(SEQUENCE_MODELS)}")
    for entry, layer in zip(layers, model.layers, strict=False):
        if isinstance(getattr(layer, "rng", None), np.random.Generator):
            # MT19937, Philox and SFC64 keep NumPy arrays in their state: store them as lists
            entry["rng_state"] = json.loads(json.dumps(layer.rng.bit_generator.state, default=lambda a: a.tolist()))
    ref = model.reference_array
    desc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "xpnet_version": __version__,
        "layers": layers,
        "loss": type(model.loss_layer).__name__,
        "dtype": None if ref is None else host_dtype(ref.dtype).name,
        "params": list(model.params),
        "state": list(model.state),
        "optimizer": None,
        "meta": meta or {},
    }
    if getattr(model, "input_shape", None) is not None:  # a model of images: (C, H, W)
        desc["input_shape"] = list(model.input_shape)
    if kind is not None:  # a sequence model: its class rebuilds it from the layers
        desc["model"] = kind
    if optimizer is not None:
        slots = [s for s in optimizer.slots]
        desc["optimizer"] = {
            "name": _optimizer_name(optimizer),
            "config": _optimizer_config(optimizer),
            "step": int(optimizer.state["step"]),
            "slots": slots,
            "keys": {s: list(optimizer.state[s]) for s in slots},
        }
    return desc


def to_bytes(model: Sequential, optimizer: Optimizer | None = None, meta: dict | None = None) -> bytes:
    """The checkpoint file's bytes (what :func:`save` writes)."""
    desc = describe(model, optimizer, meta)
    arrays = {f"param/{k}": to_numpy(v) for k, v in model.params.items()}
    arrays.update({f"state/{k}": to_numpy(v) for k, v in model.state.items()})
    if optimizer is not None:
        for slot in optimizer.slots:
            for k, v in optimizer.state[slot].items():
                arrays[f"opt/{slot}/{k}"] = to_numpy(v)
    try:
        text = json.dumps(desc, allow_nan=True)
    except (TypeError, ValueError) as e:  # ValueError: a circular reference
        raise ConfigError(
            f"checkpoint meta must hold JSON values only (numbers, strings, lists, dicts): {e}"
        ) from e
    arrays[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save(path, model: Sequential, optimizer: Optimizer | None = None, meta: dict | None = None) -> Path:
    """Write model weights, optimizer state and ``meta`` (JSON values) to ``path`` atomically."""
    return write_atomic(path, to_bytes(model, optimizer, meta))


# ---------------------------------------------------------------------- read and check
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a .npz is a zip file (the second: an empty zip)
WRITTEN_BY = "write it again with xpnet train or xpnet.checkpoint.save"


def read(path) -> tuple[dict, dict]:
    """``(description, host arrays)`` of a checkpoint, fully checked; nothing is built."""
    where = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(
            f"{where!r} is a folder; expected a checkpoint file such as {os.path.join(where, 'checkpoint.npz')!r}"
        )
    if is_safetensors(path):
        desc, arrays = read_safetensors(path)
        return _validated(desc, arrays, where)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise CheckpointError(f"cannot read checkpoint {where!r}: {e}") from e
    if not data:
        raise CheckpointError(f"{where!r} is empty (0 bytes); expected an xpnet checkpoint ({WRITTEN_BY})")
    if data[:4] not in ZIP_MAGIC:
        raise CheckpointError(
            f"{where!r} is not an xpnet checkpoint: it is not a zip/.npz file (it starts with "
            f"{data[:16]!r}); checkpoints are the .npz files that xpnet train and xpnet.checkpoint.save write"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = list(npz.files)
            if META_KEY not in names:
                raise CheckpointError(
                    f"{where!r} is not an xpnet checkpoint: it has no {META_KEY!r} entry "
                    f"(entries: {names[:8]}); write checkpoints with xpnet.checkpoint.save"
                )
            arrays = {k: npz[k] for k in names}
    except CheckpointError:
        raise
    except Exception as e:  # BadZipFile, zlib.error, ValueError, EOFError, OSError...
        raise CheckpointError(
            f"{where!r} is corrupted, truncated or not an xpnet checkpoint ({type(e).__name__}: {e})"
        ) from e
    try:
        desc = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where!r}: the JSON description is unreadable ({e})") from e
    return _validated(desc, arrays, where)


def _validated(desc, arrays: dict, where: str) -> tuple[dict, dict]:
    """``(desc, arrays)`` once the description and the arrays are checked (any file format)."""
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        raise CheckpointError(
            f"{where!r} is not an xpnet checkpoint "
            f"(format {desc.get('format') if isinstance(desc, dict) else None!r})"
        )
    version = desc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(
            f"{where!r}: format_version is {S.show(version)}; expected the integer {FORMAT_VERSION} "
            f"(the file was edited by hand or written by another program; {WRITTEN_BY})"
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{where!r} has checkpoint format version {version}; this xpnet reads version "
            f"{FORMAT_VERSION}; use the xpnet version that wrote it"
        )
    try:
        _DESCRIPTION(desc, "description")
        _check_arrays(desc, arrays)
    except S.Invalid as e:
        raise CheckpointError(
            f"{where!r}: {e}; the file was edited by hand or written by another program ({WRITTEN_BY})"
        ) from None
    return desc, arrays


# optimizer hyper-parameters (any other constructor argument: a finite number)
_HYPER = {
    "lr": S.POSITIVE,
    "weight_decay": S.number(lambda v: v >= 0, "a finite number >= 0"),
    "clip_norm": S.number(lambda v: v >= 0, "a finite number >= 0 (0: no clipping)"),
    "momentum": S.FRACTION,
    "decay_rate": S.FRACTION,
    "beta1": S.FRACTION,
    "beta2": S.FRACTION,
    "eps": S.POSITIVE,
}


BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _generator(state: dict) -> np.random.Generator:
    """A NumPy generator restored from its bit generator's ``state`` dict."""
    rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    rng.bit_generator.state = state
    return rng


def _rng_state(v, path):
    if not isinstance(v, dict) or v.get("bit_generator") not in BIT_GENERATORS:
        S.fail(path, f"a NumPy generator state naming one of {', '.join(BIT_GENERATORS)}", v)
    try:
        _generator(v)
    except (TypeError, ValueError, KeyError) as e:
        raise S.Invalid(f"{path} is not the state of a NumPy {v['bit_generator']} ({type(e).__name__}: {e})") from None


def _layer(entry, path):
    obj = S.kind((dict,), "a JSON object")
    types = S.one_of(list(LAYER_TYPES))
    S.fields({"type": types, "config": obj, "params": obj}, {"rng_state": _rng_state})(entry, path)
    kind = LAYER_TYPES[entry["type"]]
    S.fields(kind.config)(entry["config"], f"{path}.config")
    S.fields(dict.fromkeys(kind.params, S.SHAPE))(entry["params"], f"{path}.params")


def _optimizer(opt, path):
    S.fields(
        {
            "name": S.one_of(list(OPTIMIZERS)),
            "config": S.kind((dict,), "a JSON object"),
            "step": S.integer(0),
            "slots": S.list_of(S.TEXT, "a list of names"),
            "keys": S.kind((dict,), "a JSON object"),
        }
    )(opt, path)
    cls = OPTIMIZERS[opt["name"]]
    args = [a for a in inspect.signature(cls.__init__).parameters if a != "self"]
    S.fields({}, {a: _HYPER.get(a, S.number(lambda v: True, "a finite number")) for a in args})(
        opt["config"], f"{path}.config"
    )
    if opt["slots"] != list(cls.slots):
        S.fail(f"{path}.slots", f"{list(cls.slots)} for {opt['name']}", opt["slots"])
    S.fields(dict.fromkeys(cls.slots, S.list_of(S.TEXT, "a list of parameter names")))(opt["keys"], f"{path}.keys")


_DESCRIPTION = S.fields(
    {
        "format": S.TEXT,
        "format_version": S.integer(1),
        "xpnet_version": S.TEXT,
        "layers": S.list_of(_layer, "a non-empty list of layers", min_len=1),
        "loss": S.one_of(list(_LOSSES)),
        "dtype": S.optional(S.one_of(DTYPES)),
        "params": S.list_of(S.TEXT, "a list of parameter names"),
        "state": S.list_of(S.TEXT, "a list of state names"),
        "optimizer": S.optional(_optimizer),
        "meta": S.kind((dict,), "a JSON object"),
    },
    {"input_shape": S.list_of(S.integer(1), "one sample's shape: a non-empty list of integers >= 1", min_len=1),
     "model": S.one_of(list(SEQUENCE_MODELS))},
)


def _check_arrays(desc: dict, arrays: dict) -> None:
    """The layers fit together, and the arrays are exactly those described, in shape and dtype."""
    layers = desc["layers"]
    want: dict[str, list] = {}  # array name -> shape
    shape = desc.get("input_shape")  # what flows out of the previous layer, once known: a feature count,
    width = None if shape is None else (tuple(shape) if len(shape) > 1 else shape[0])  # or images (C, H, W)
    param_keys, state_keys = _keys(layers)
    for i, entry in enumerate(layers):
        p = entry["params"]
        for name, key in param_keys[i].items():
            want[f"param/{key}"] = p[name]
        width, state = LAYER_TYPES[entry["type"]].check_shapes(p, width, i, entry["config"])
        if "model" in desc:  # not a chain: each layer is checked alone, then the model's layout
            width = None
        for name, key in state_keys[i].items():
            want[f"state/{key}"] = state[name]
    if "model" in desc:
        try:
            SEQUENCE_MODELS[desc["model"]].check_layout([e["type"] for e in layers], [e["params"] for e in layers])
        except (ConfigError, ShapeError) as e:
            raise S.Invalid(f"the layers do not make a {desc['model']} model: {e}") from None
    for field, prefix in (("params", "param/"), ("state", "state/")):
        names = [k.removeprefix(prefix) for k in want if k.startswith(prefix)]
        if desc[field] != names:
            S.fail(field, f"{names} (from the layers)", desc[field])
    opt = desc["optimizer"]
    if opt is not None:
        for slot, keys in opt["keys"].items():
            for k in keys:
                if k not in desc["params"]:
                    raise S.Invalid(f"optimizer.keys.{slot} names {k!r}, which is not a parameter {desc['params']}")
                want[f"opt/{slot}/{k}"] = want[f"param/{k}"]
    dtype = desc["dtype"]
    if want and dtype is None:
        S.fail("dtype", "'float32' or 'float64' (the model has parameters)", dtype)
    for name, shape in want.items():
        a = arrays.get(name)
        kind, _, key = name.partition("/")
        label = {"param": "parameter", "state": "state array", "opt": "optimizer state"}[kind] + f" {key}"
        if a is None:
            raise S.Invalid(f"{label} is missing (no array {name!r} in the file)")
        if list(a.shape) != shape or a.dtype != np.dtype(dtype):
            raise S.Invalid(
                f"{label} has shape {list(a.shape)} and dtype {a.dtype}; "
                f"the description says shape {shape} and dtype {dtype}"
            )
    extra = sorted(set(arrays) - set(want))
    if extra:
        raise S.Invalid(f"the file holds arrays the description does not name: {extra[:8]}")


# ---------------------------------------------------------------------- load
def _keys(layers: list) -> tuple[list, list]:
    """For each described layer, its parameter and state names mapped to the model's keys (W1, b1...)."""
    return (numbered(entry["params"] for entry in layers),
            numbered(LAYER_TYPES[entry["type"]].state for entry in layers))


def _build_layer(entry: dict, p: dict, s: dict):
    rng = _generator(entry["rng_state"]) if "rng_state" in entry else None
    return LAYER_TYPES[entry["type"]].rebuild(entry["config"], p, s, rng)


def _backend_for(desc: dict, where: str, backend, device, dtype) -> Backend:
    """The backend to load onto; a float64 checkpoint on a device without float64 says what to do."""
    if dtype is None and desc["dtype"] == "float64":
        probe = resolve(backend, device, "float32")  # a bad backend or device raises its own error
        if not probe.supports_float64:
            raise BackendError(
                f"{where!r} holds float64 weights, but device {probe.device} of {probe.name} has no "
                f"float64; load them as float32: --dtype float32 (xpnet eval / predict) or "
                f"xpnet.checkpoint.load(path, dtype='float32')"
            )
    return resolve(backend, device, dtype or desc["dtype"] or None)


def load(path, backend: Backend | str | None = None, device: str | None = None, dtype: str | None = None):
    """``(model, optimizer, meta)`` from a checkpoint, on ``backend`` (default: the current choice,
    e.g. ``XPNET_BACKEND``) in ``dtype`` (default: the dtype it was saved in).

    ``optimizer`` is None when none was saved. Float64 weights come back bit-identical.
    """
    desc, arrays = read(path)
    be = backend if isinstance(backend, Backend) else _backend_for(desc, os.fspath(path), backend, device, dtype)

    def put(a):
        return be.asarray(a)

    layers = []
    for entry, pk, sk in zip(desc["layers"], *_keys(desc["layers"]), strict=True):
        p = {name: put(arrays[f"param/{key}"]) for name, key in pk.items()}
        s = {name: put(arrays[f"state/{key}"]) for name, key in sk.items()}
        layers.append(_build_layer(entry, p, s))
    if "model" in desc:
        model = SEQUENCE_MODELS[desc["model"]](*layers)
    else:
        model = Sequential(layers, _LOSSES[desc["loss"]](), input_shape=desc.get("input_shape"))
    optimizer = None
    if desc["optimizer"] is not None:
        o = desc["optimizer"]
        optimizer = OPTIMIZERS[o["name"]](**o["config"])
        optimizer.state["step"] = o["step"]
        for slot, ks in o["keys"].items():
            optimizer.state[slot] = {k: put(arrays[f"opt/{slot}/{k}"]) for k in ks}
    meta = dict(desc["meta"])
    meta.setdefault("xpnet_version", desc["xpnet_version"])
    meta.setdefault("dtype", desc["dtype"])
    return model, optimizer, meta


def describe_file(path) -> dict:
    """The JSON description of a checkpoint (checked), without loading any weights."""
    return read(path)[0]
