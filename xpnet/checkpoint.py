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
any backend and device. Files are written atomically: to a temporary file in the same
folder, flushed and fsync'ed, then renamed over the target, so a crash never leaves a
half-written checkpoint. Loading checks everything before building anything: a corrupted,
truncated or foreign file raises :class:`~xpnet.errors.CheckpointError` and no model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import layers as L
from .backend import Backend, host_dtype, resolve, to_numpy
from .errors import CheckpointError, ConfigError
from .losses import LOSSES
from .model import Sequential
from .optimizers import OPTIMIZERS, Optimizer

FORMAT = "xpnet-checkpoint"
FORMAT_VERSION = 1
META_KEY = "__xpnet__"

_LAYERS = {
    cls.__name__: cls
    for cls in (
        L.Affine,
        L.MatMul,
        L.Repeat,
        L.Sum,
        L.ReLU,
        L.Sigmoid,
        L.Tanh,
        L.Softmax,
        L.Dropout,
        L.BatchNormalization,
    )
}
_LOSSES = {cls.__name__: cls for cls in LOSSES.values()}


# ---------------------------------------------------------------------- atomic files
@contextlib.contextmanager
def atomic_file(path, suffix: str = ".tmp"):
    """Yield a binary file whose bytes replace ``path`` only when the block ends cleanly.

    The file is a temporary one in the same folder; on a clean exit it is flushed, fsynced
    and renamed onto ``path`` (an atomic step), then the folder is fsynced. On any error the
    temporary file is removed and ``path`` keeps its old contents. A kill (SIGKILL, power
    loss) can leave only a stray temporary file, never a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable where the platform allows it
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)


# ---------------------------------------------------------------------- save
def _optimizer_name(opt: Optimizer) -> str:
    for name, cls in OPTIMIZERS.items():
        if type(opt) is cls:
            return name
    raise CheckpointError(
        f"cannot save optimizer {type(opt).__name__}: only {', '.join(OPTIMIZERS)} are known"
    )


def _optimizer_config(opt: Optimizer) -> dict:
    cfg = dict(opt.config())
    if hasattr(opt, "eps"):
        cfg["eps"] = opt.eps
    return cfg


def describe(model: Sequential, optimizer: Optimizer | None = None, meta: dict | None = None) -> dict:
    """The JSON description stored in a checkpoint."""
    from . import __version__

    layers = model.describe()
    for entry, layer in zip(layers, model.layers, strict=False):
        if isinstance(getattr(layer, "rng", None), np.random.Generator):
            entry["rng_state"] = layer.rng.bit_generator.state
    ref = next(iter(model.params.values()), None)
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
    except TypeError as e:
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


# ---------------------------------------------------------------------- load
def read(path) -> tuple[dict, dict]:
    """``(description, host arrays)`` of a checkpoint, fully checked; nothing is built."""
    where = os.fspath(path)
    from .export import is_safetensors, read_safetensors  # imports safetensors only for such a file

    if is_safetensors(path):
        desc, arrays = read_safetensors(path)
        _check(desc, arrays, where)
        return desc, arrays
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {where!r}: {e}") from e
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
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        raise CheckpointError(
            f"{where!r} is not an xpnet checkpoint "
            f"(format {desc.get('format') if isinstance(desc, dict) else None!r})"
        )
    if desc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{where!r} has checkpoint format version {desc.get('format_version')}; this "
            f"xpnet reads version {FORMAT_VERSION}"
        )
    _check(desc, arrays, where)
    return desc, arrays


def _check(desc: dict, arrays: dict, where: str) -> None:
    keys = _layer_keys(desc["layers"])
    for i, (entry, ks) in enumerate(zip(desc["layers"], keys, strict=False)):
        if entry.get("type") not in _LAYERS:
            raise CheckpointError(
                f"{where!r}: layer {i} has unknown type {entry.get('type')!r}; known: {', '.join(_LAYERS)}"
            )
        for name, key in ks.items():
            a = arrays.get(f"param/{key}")
            if a is None:
                raise CheckpointError(f"{where!r}: parameter {key} of layer {i} ({entry['type']}) is missing")
            if list(a.shape) != list(entry["params"][name]):
                raise CheckpointError(
                    f"{where!r}: parameter {key} has shape {list(a.shape)}, the description "
                    f"says {entry['params'][name]}"
                )
    if desc.get("loss") not in _LOSSES:
        raise CheckpointError(f"{where!r}: unknown loss {desc.get('loss')!r}")
    for key in desc.get("state", []):
        if f"state/{key}" not in arrays:
            raise CheckpointError(f"{where!r}: state array {key} is missing")
    opt = desc.get("optimizer")
    if opt is not None:
        if opt.get("name") not in OPTIMIZERS:
            raise CheckpointError(f"{where!r}: unknown optimizer {opt.get('name')!r}")
        for slot, ks in opt["keys"].items():
            for k in ks:
                a, p = arrays.get(f"opt/{slot}/{k}"), arrays.get(f"param/{k}")
                if a is None or p is None or a.shape != p.shape:
                    raise CheckpointError(
                        f"{where!r}: optimizer state {slot}/{k} is missing or does not match its parameter"
                    )


def _layer_keys(layers: list) -> list[dict]:
    """For each layer, its parameter names mapped to the model's flat keys (W1, b1, W2...)."""
    counts: dict[str, int] = {}
    out = []
    for entry in layers:
        ks = {}
        for name in entry.get("params", {}):
            counts[name] = counts.get(name, 0) + 1
            ks[name] = f"{name}{counts[name]}"
        out.append(ks)
    return out


def _build_layer(entry: dict, p: dict, s: dict):
    kind, cfg = entry["type"], entry.get("config", {})
    if kind == "Affine":
        return L.Affine(p["W"], p["b"])
    if kind == "MatMul":
        return L.MatMul(p["W"])
    if kind == "Repeat":
        return L.Repeat(cfg["n"])
    if kind == "Dropout":
        layer = L.Dropout(cfg["ratio"])
        if "rng_state" in entry:
            layer.rng.bit_generator.state = entry["rng_state"]
        return layer
    if kind == "BatchNormalization":
        return L.BatchNormalization(
            p["gamma"],
            p["beta"],
            cfg.get("momentum", 0.9),
            s.get("running_mean"),
            s.get("running_var"),
            cfg.get("eps", 1e-7),
        )
    return _LAYERS[kind]()


def load(path, backend: Backend | str | None = None, device: str | None = None, dtype: str | None = None):
    """``(model, optimizer, meta)`` from a checkpoint, on ``backend`` (default: the current choice,
    e.g. ``XPNET_BACKEND``) in ``dtype`` (default: the dtype it was saved in).

    ``optimizer`` is None when none was saved. Float64 weights come back bit-identical.
    """
    desc, arrays = read(path)
    if isinstance(backend, Backend):
        be = backend
    else:
        be = resolve(backend, device, dtype or desc.get("dtype") or None)

    def put(a):
        return be.asarray(a)

    layer_keys = _layer_keys(desc["layers"])
    state_counts: dict[str, int] = {}
    layers = []
    for entry, ks in zip(desc["layers"], layer_keys, strict=False):
        p = {name: put(arrays[f"param/{key}"]) for name, key in ks.items()}
        s = {}
        if entry["type"] == "BatchNormalization":
            for name in ("running_mean", "running_var"):
                state_counts[name] = state_counts.get(name, 0) + 1
                a = arrays.get(f"state/{name}{state_counts[name]}")
                if a is not None:
                    s[name] = put(a)
        layers.append(_build_layer(entry, p, s))
    model = Sequential(layers, _LOSSES[desc["loss"]]())
    optimizer = None
    if desc.get("optimizer") is not None:
        o = desc["optimizer"]
        optimizer = OPTIMIZERS[o["name"]](**o["config"])
        optimizer.state["step"] = int(o["step"])
        for slot, ks in o["keys"].items():
            optimizer.state[slot] = {k: put(arrays[f"opt/{slot}/{k}"]) for k in ks}
    meta = dict(desc.get("meta", {}))
    meta.setdefault("xpnet_version", desc.get("xpnet_version"))
    meta.setdefault("dtype", desc.get("dtype"))
    return model, optimizer, meta


def describe_file(path) -> dict:
    """The JSON description of a checkpoint (checked), without loading any weights."""
    return read(path)[0]
