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
half-written checkpoint; a new file gets the mode ``open(path, "w")`` would give it.
Loading checks everything before building anything: the description against a schema (every
key, type and range: ``layers[2].config.ratio is 'x' (type str); expected a number in [0, 1)``),
then every array's presence, shape and dtype. A corrupted, truncated, hand-edited or foreign
file raises :class:`~xpnet.errors.CheckpointError` and no model.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from . import layers as L
from .backend import DTYPES, Backend, host_dtype, resolve, to_numpy
from .errors import BackendError, CheckpointError, ConfigError
from .losses import LOSSES
from .model import Sequential
from .optimizers import OPTIMIZERS, Optimizer

FORMAT = "xpnet-checkpoint"
FORMAT_VERSION = 1
META_KEY = "__xpnet__"

_LOSSES = {cls.__name__: cls for cls in LOSSES.values()}


# ---------------------------------------------------------------------- atomic files
def _proc_umask() -> int | None:
    """The umask as Linux shows it in /proc/self/status (read without changing it), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_by_setting() -> int:
    # os.umask reads the mask only by setting it, for every thread at once: done once, at import
    old = os.umask(0o022)
    os.umask(old)
    return old


_UMASK_AT_IMPORT = _umask_by_setting() if _proc_umask() is None else 0o022


def _umask() -> int:
    """The process umask: read from /proc each time where it can be, else the one at import."""
    mask = _proc_umask()
    return _UMASK_AT_IMPORT if mask is None else mask


def _new_file_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: the file's own if it exists, else 0666 & ~umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_file(path, suffix: str = ".tmp"):
    """Yield a binary file whose bytes replace ``path`` only when the block ends cleanly.

    The file is a temporary one in the same folder; on a clean exit it is flushed, fsynced
    and renamed onto ``path`` (an atomic step), then the folder is fsynced. On any error the
    temporary file is removed and ``path`` keeps its old contents. A kill (SIGKILL, power
    loss) can leave only a stray temporary file, never a half-written ``path``. The file
    gets the mode a plain ``open(path, "w")`` would give it (not the temporary file's 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, mode)
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
    return {k: float(v) for k, v in opt.config().items()}


def describe(model: Sequential, optimizer: Optimizer | None = None, meta: dict | None = None) -> dict:
    """The JSON description stored in a checkpoint."""
    from . import __version__

    if meta is not None and not isinstance(meta, dict):
        raise ConfigError(f"checkpoint meta must be a dict of JSON values, got {type(meta).__name__}")
    layers = model.describe()
    for entry in layers:
        if entry["type"] not in _LAYERS:
            raise CheckpointError(f"cannot save layer {entry['type']}: only {', '.join(_LAYERS)} are known")
    if type(model.loss_layer).__name__ not in _LOSSES:
        raise CheckpointError(
            f"cannot save loss {type(model.loss_layer).__name__}: only {', '.join(_LOSSES)} are known"
        )
    for entry, layer in zip(layers, model.layers, strict=False):
        if isinstance(getattr(layer, "rng", None), np.random.Generator):
            # MT19937, Philox and SFC64 keep NumPy arrays in their state: store them as lists
            entry["rng_state"] = json.loads(json.dumps(layer.rng.bit_generator.state, default=lambda a: a.tolist()))
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
    from .export import is_safetensors, read_safetensors  # imports safetensors only for such a file

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
            f"{where!r}: format_version is {_show(version)}; expected the integer {FORMAT_VERSION} "
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
    except _Invalid as e:
        raise CheckpointError(
            f"{where!r}: {e}; the file was edited by hand or written by another program ({WRITTEN_BY})"
        ) from None
    return desc, arrays


# A description is checked against a schema: each check is a function of (value, path) that
# raises _Invalid naming the path (``layers[2].config.ratio``), what it holds and what was expected.
class _Invalid(Exception):
    pass


def _show(value) -> str:
    text = repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} (type {type(value).__name__})"


def _fail(path: str, expected: str, value):
    raise _Invalid(f"{path} is {_show(value)}; expected {expected}")


def _kind(types, expected: str):
    def check(v, path):
        if not isinstance(v, types) or isinstance(v, bool) and bool not in types:
            _fail(path, expected, v)
    return check


def _integer(low: int):
    def check(v, path):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            _fail(path, f"an integer >= {low}", v)
    return check


def _number(ok, expected: str):
    def check(v, path):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
            _fail(path, expected, v)
    return check


def _one_of(choices):
    def check(v, path):
        if not isinstance(v, str) or v not in choices:
            _fail(path, "one of " + ", ".join(map(repr, choices)), v)
    return check


def _optional(inner):
    def check(v, path):
        if v is not None:
            inner(v, path)
    return check


def _list_of(item, expected: str, min_len: int = 0):
    def check(v, path):
        if not isinstance(v, list) or len(v) < min_len:
            _fail(path, expected, v)
        for i, x in enumerate(v):
            item(x, f"{path}[{i}]")
    return check


def _fields(required: dict, optional: dict | None = None):
    """A JSON object with all of ``required``'s keys, any of ``optional``'s, no other."""
    optional = optional or {}

    def check(v, path):
        if not isinstance(v, dict):
            _fail(path, f"a JSON object with the keys {list(required)}", v)
        missing = [k for k in required if k not in v]
        if missing:
            raise _Invalid(f"{path} lacks {missing}; expected the keys {list(required)}")
        unknown = [k for k in v if k not in required and k not in optional]
        if unknown:
            raise _Invalid(f"{path} has unknown keys {unknown}; expected only {[*required, *optional]}")
        for k, inner in {**required, **optional}.items():
            if k in v:
                inner(v[k], f"{path}.{k}")
    return check


_TEXT = _kind((str,), "a string")
_SHAPE = _list_of(_integer(0), "a shape: a list of integers >= 0")
_POSITIVE = _number(lambda v: v > 0, "a finite number > 0")
_FRACTION = _number(lambda v: 0 <= v < 1, "a number in [0, 1)")
_FRACTION_CLOSED = _number(lambda v: 0 <= v <= 1, "a number in [0, 1]")

# layer type: (class, config fields, parameter names)
_LAYERS = {
    "Affine": (L.Affine, {}, ("W", "b")),
    "MatMul": (L.MatMul, {}, ("W",)),
    "Repeat": (L.Repeat, {"n": _integer(1)}, ()),
    "Sum": (L.Sum, {}, ()),
    "ReLU": (L.ReLU, {}, ()),
    "Sigmoid": (L.Sigmoid, {}, ()),
    "Tanh": (L.Tanh, {}, ()),
    "Softmax": (L.Softmax, {}, ()),
    "Dropout": (L.Dropout, {"ratio": _FRACTION}, ()),
    "BatchNormalization": (L.BatchNormalization, {"momentum": _FRACTION_CLOSED, "eps": _POSITIVE}, ("gamma", "beta")),
}

# optimizer hyper-parameters (any other constructor argument: a finite number)
_HYPER = {
    "lr": _POSITIVE,
    "weight_decay": _number(lambda v: v >= 0, "a finite number >= 0"),
    "momentum": _FRACTION,
    "decay_rate": _FRACTION,
    "beta1": _FRACTION,
    "beta2": _FRACTION,
    "eps": _POSITIVE,
}


BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _generator(state: dict) -> np.random.Generator:
    """A NumPy generator restored from its bit generator's ``state`` dict."""
    rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    rng.bit_generator.state = state
    return rng


def _rng_state(v, path):
    if not isinstance(v, dict) or v.get("bit_generator") not in BIT_GENERATORS:
        _fail(path, f"a NumPy generator state naming one of {', '.join(BIT_GENERATORS)}", v)
    try:
        _generator(v)
    except (TypeError, ValueError, KeyError) as e:
        raise _Invalid(f"{path} is not the state of a NumPy {v['bit_generator']} ({type(e).__name__}: {e})") from None


def _layer(entry, path):
    obj = _kind((dict,), "a JSON object")
    _fields({"type": _one_of(list(_LAYERS)), "config": obj, "params": obj}, {"rng_state": _rng_state})(entry, path)
    _, config, names = _LAYERS[entry["type"]]
    _fields(config)(entry["config"], f"{path}.config")
    _fields(dict.fromkeys(names, _SHAPE))(entry["params"], f"{path}.params")


def _optimizer(opt, path):
    _fields(
        {
            "name": _one_of(list(OPTIMIZERS)),
            "config": _kind((dict,), "a JSON object"),
            "step": _integer(0),
            "slots": _list_of(_TEXT, "a list of names"),
            "keys": _kind((dict,), "a JSON object"),
        }
    )(opt, path)
    cls = OPTIMIZERS[opt["name"]]
    args = [a for a in inspect.signature(cls.__init__).parameters if a != "self"]
    _fields({}, {a: _HYPER.get(a, _number(lambda v: True, "a finite number")) for a in args})(
        opt["config"], f"{path}.config"
    )
    if opt["slots"] != list(cls.slots):
        _fail(f"{path}.slots", f"{list(cls.slots)} for {opt['name']}", opt["slots"])
    _fields(dict.fromkeys(cls.slots, _list_of(_TEXT, "a list of parameter names")))(opt["keys"], f"{path}.keys")


_DESCRIPTION = _fields(
    {
        "format": _TEXT,
        "format_version": _integer(1),
        "xpnet_version": _TEXT,
        "layers": _list_of(_layer, "a non-empty list of layers", min_len=1),
        "loss": _one_of(list(_LOSSES)),
        "dtype": _optional(_one_of(DTYPES)),
        "params": _list_of(_TEXT, "a list of parameter names"),
        "state": _list_of(_TEXT, "a list of state names"),
        "optimizer": _optional(_optimizer),
        "meta": _kind((dict,), "a JSON object"),
    }
)


def _check_arrays(desc: dict, arrays: dict) -> None:
    """The layers fit together, and the arrays are exactly those described, in shape and dtype."""
    layers = desc["layers"]
    want: dict[str, list] = {}  # array name -> shape
    width = None  # features flowing out of the previous layer, once known
    for i, (entry, keys) in enumerate(zip(layers, _layer_keys(layers), strict=True)):
        p, path = entry["params"], f"layers[{i}].params"
        for name, key in keys.items():
            want[f"param/{key}"] = p[name]
        if "W" in p:
            if len(p["W"]) != 2 or ("b" in p and p["b"] != p["W"][1:]):
                _fail(path, "W of shape [in, out] (and b of shape [out])", p)
            if width is not None and p["W"][0] != width:
                raise _Invalid(f"layers[{i}] takes {p['W'][0]} features but the layer before gives {width}")
            width = p["W"][1]
        if "gamma" in p:
            if len(p["gamma"]) != 1 or p["beta"] != p["gamma"] or width not in (None, p["gamma"][0]):
                _fail(path, f"gamma and beta of shape [{width or 'features'}]", p)
            width = p["gamma"][0]
            n = sum(e["type"] == "BatchNormalization" for e in layers[: i + 1])
            want[f"state/running_mean{n}"] = want[f"state/running_var{n}"] = p["gamma"]
    for field, prefix in (("params", "param/"), ("state", "state/")):
        names = [k.removeprefix(prefix) for k in want if k.startswith(prefix)]
        if desc[field] != names:
            _fail(field, f"{names} (from the layers)", desc[field])
    opt = desc["optimizer"]
    if opt is not None:
        for slot, keys in opt["keys"].items():
            for k in keys:
                if k not in desc["params"]:
                    raise _Invalid(f"optimizer.keys.{slot} names {k!r}, which is not a parameter {desc['params']}")
                want[f"opt/{slot}/{k}"] = want[f"param/{k}"]
    dtype = desc["dtype"]
    if want and dtype is None:
        _fail("dtype", "'float32' or 'float64' (the model has parameters)", dtype)
    for name, shape in want.items():
        a = arrays.get(name)
        kind, _, key = name.partition("/")
        label = {"param": "parameter", "state": "state array", "opt": "optimizer state"}[kind] + f" {key}"
        if a is None:
            raise _Invalid(f"{label} is missing (no array {name!r} in the file)")
        if list(a.shape) != shape or a.dtype != np.dtype(dtype):
            raise _Invalid(
                f"{label} has shape {list(a.shape)} and dtype {a.dtype}; "
                f"the description says shape {shape} and dtype {dtype}"
            )
    extra = sorted(set(arrays) - set(want))
    if extra:
        raise _Invalid(f"the file holds arrays the description does not name: {extra[:8]}")


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


# ---------------------------------------------------------------------- load
def _build_layer(entry: dict, p: dict, s: dict):
    cls, cfg = _LAYERS[entry["type"]][0], entry["config"]
    if cls is L.Affine:
        return L.Affine(p["W"], p["b"])
    if cls is L.MatMul:
        return L.MatMul(p["W"])
    if cls is L.Repeat:
        return L.Repeat(cfg["n"])
    if cls is L.Dropout:
        return L.Dropout(cfg["ratio"], _generator(entry["rng_state"]) if "rng_state" in entry else None)
    if cls is L.BatchNormalization:
        return L.BatchNormalization(
            p["gamma"], p["beta"], cfg["momentum"], s["running_mean"], s["running_var"], cfg["eps"]
        )
    return cls()


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

    layer_keys = _layer_keys(desc["layers"])
    state_counts: dict[str, int] = {}
    layers = []
    for entry, ks in zip(desc["layers"], layer_keys, strict=False):
        p = {name: put(arrays[f"param/{key}"]) for name, key in ks.items()}
        s = {}
        if entry["type"] == "BatchNormalization":
            for name in ("running_mean", "running_var"):
                state_counts[name] = state_counts.get(name, 0) + 1
                s[name] = put(arrays[f"state/{name}{state_counts[name]}"])
        layers.append(_build_layer(entry, p, s))
    model = Sequential(layers, _LOSSES[desc["loss"]]())
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
