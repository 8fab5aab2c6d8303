"""A trained model for other tools: an ONNX graph (onnxruntime) and safetensors weights (PyTorch).

Needs the ``export`` extra (``pip install 'xpnet[export]'``: onnx, onnxruntime, safetensors);
they are imported only when an export runs, never by ``import xpnet``.

**ONNX** (opset :data:`OPSET`, IR version :data:`IR_VERSION`, batch axis dynamic): one small
function per layer type builds its nodes with the ``onnx`` helpers, walking the same layer list
the model walks. The graph starts with the dataset's scaling ``(x - offset) / divisor`` so it
takes the raw features ``xpnet predict`` takes, and ends with scores, or with probabilities
(Softmax, or Sigmoid for a one-output binary classifier) when asked. Layers: Affine (N-D input
flattened, as the layer does), MatMul, ReLU, Sigmoid, Tanh, Softmax, BatchNormalization in
evaluation form (running statistics; the layer's eps added to the running variance), Dropout in evaluation form
(``x * (1 - ratio)``). Repeat and Sum change the batch axis and have no export: an error says so.
The graph's float type is the model's unless ``dtype`` is given; float64 weights exported as
float32 are rounded to the nearest float32 (a documented conversion: scores then agree with
xpnet's to float32 precision), and a weight beyond float32's range is refused.

**safetensors**: the arrays of an xpnet checkpoint under the same names (``param/W1``,
``state/running_mean1``, ``opt/m/W1``...) with xpnet's JSON description in the header metadata
under ``__xpnet__``. :func:`read_safetensors` gives back exactly what
:func:`xpnet.checkpoint.read` gives for an ``.npz``, so ``xpnet eval``, ``predict`` and
``train --resume`` take either file, bit for bit in float64.
"""

from __future__ import annotations

import importlib
import io
import json
import os
from pathlib import Path

import numpy as np

from . import checkpoint as C
from . import layers as L
from .backend import host_dtype, to_numpy
from .errors import CheckpointError, ConfigError, OutputError, XPNetError

OPSET = 21
IR_VERSION = 10  # what onnxruntime 1.20 and later read
FORMATS = ("onnx", "safetensors")
INPUT, SCORES, PROBABILITIES = "x", "scores", "probabilities"


class ExportError(XPNetError, ValueError):
    """A model that cannot be exported as asked (a layer with no ONNX form, weights out of range)."""


class ExportUnavailableError(XPNetError, ImportError):
    """A package of the ``export`` extra is not installed (the message names it)."""


def _require(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ExportUnavailableError(
            f"xpnet's ONNX and safetensors support needs the {package!r} package, which is not installed "
            f"({e}); install it with pip install 'xpnet[export]' (or pip install {package})"
        ) from e


# ---------------------------------------------------------------------- ONNX
class _Graph:
    """Nodes and initializers of one ONNX graph in one float type; names are made unique here."""

    def __init__(self, onnx, dtype: np.dtype, rank: int):
        self.onnx, self.dtype, self.rank = onnx, dtype, rank
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, value, what: str) -> str:
        """An initializer holding ``value`` in the graph's dtype; values that do not fit are refused."""
        host = to_numpy(value)
        if not np.all(np.isfinite(host)):
            raise ExportError(f"{what} holds NaN or inf; a model with non-finite weights cannot be exported")
        with np.errstate(over="ignore"):
            cast = host.astype(self.dtype)
        if not np.all(np.isfinite(cast)):
            raise ExportError(
                f"{what} has values beyond {self.dtype.name}'s range (largest magnitude "
                f"{float(np.max(np.abs(host))):.3g}); export it as float64 instead (--dtype float64)"
            )
        name = self.name(what.split(" ")[0])
        self.inits.append(self.onnx.numpy_helper.from_array(cast, name))
        return name

    def node(self, op: str, inputs: list, **attrs) -> str:
        out = self.name(op)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], **attrs))
        return out

    def flatten(self, x: str) -> str:
        """``(N, ...)`` to ``(N, features)``, as Affine and BatchNormalization do with N-D input."""
        if self.rank == 2:
            return x
        self.rank = 2
        return self.node("Flatten", [x], axis=1)


def _affine(g: _Graph, layer, x: str, i: int) -> str:
    x = g.flatten(x)
    y = g.node("MatMul", [x, g.const(layer.params["W"], f"W of layer {i} (Affine)")])
    return g.node("Add", [y, g.const(layer.params["b"], f"b of layer {i} (Affine)")])


def _matmul(g: _Graph, layer, x: str, i: int) -> str:
    return g.node("MatMul", [x, g.const(layer.params["W"], f"W of layer {i} (MatMul)")])


def _batchnorm(g: _Graph, layer, x: str, i: int) -> str:
    """ONNX's BatchNormalization with ``running_var + eps`` added in the model's own dtype and epsilon 0:
    ONNX keeps epsilon as a 32-bit float, which would round a float64 model's eps."""
    rank, shape = g.rank, (g.node("Shape", [x]) if g.rank != 2 else None)
    stats = {"gamma": layer.params["gamma"], "beta": layer.params["beta"], "running_mean": layer.state["running_mean"],
             "running_var+eps": to_numpy(layer.state["running_var"]) + layer.eps}
    consts = [g.const(a, f"{n} of layer {i} (BatchNormalization)") for n, a in stats.items()]
    y = g.node("BatchNormalization", [g.flatten(x), *consts], epsilon=0.0)
    if shape is None:
        return y
    g.rank = rank
    return g.node("Reshape", [y, shape])


def _dropout(g: _Graph, layer, x: str, i: int) -> str:
    return g.node("Mul", [x, g.const(np.asarray(1.0 - layer.ratio), f"keep of layer {i} (Dropout)")])


def _elementwise(op: str, **attrs):
    return lambda g, layer, x, i: g.node(op, [x], **attrs)


ONNX_FORMS = {
    L.Affine: _affine,
    L.MatMul: _matmul,
    L.BatchNormalization: _batchnorm,
    L.Dropout: _dropout,
    L.ReLU: _elementwise("Relu"),
    L.Sigmoid: _elementwise("Sigmoid"),
    L.Tanh: _elementwise("Tanh"),
    L.Softmax: _elementwise("Softmax", axis=-1),
}
_PROBABILITIES = {"SoftmaxWithLoss": ("Softmax", {"axis": -1}), "SigmoidWithLoss": ("Sigmoid", {})}


def _input_shape(model, given) -> list[int]:
    """One sample's shape: ``given``, checked against the first layer with weights, or that layer's size."""
    first = next((layer for layer in model.layers if layer.params), None)
    if first is None:
        if given is None:
            raise ExportError("the model has no layer with weights, so its input size is unknown; "
                              "pass input_shape=(features,)")
        return [int(s) for s in given]
    size = int(next(iter(first.params.values())).shape[0])
    if given is None:
        return [size]
    shape = [int(s) for s in given]
    got = shape[-1] if isinstance(first, L.MatMul) else int(np.prod(shape))
    if got != size:
        raise ExportError(f"input_shape {tuple(shape)} gives {got} features to {type(first).__name__}, which "
                          f"takes {size}; pass a shape with {size} features")
    return shape


def _scaler(scaler: dict, shape: list) -> dict:
    """The scaler's offset and divisor as arrays that broadcast against one sample, or a clear error."""
    n = int(np.prod(shape))
    out = {}
    for key in ("offset", "divisor"):
        try:
            v = np.asarray(scaler[key], dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError) as e:
            raise ExportError(f"the checkpoint's scaler is unreadable ({type(e).__name__}: {e}); expected "
                              f"{{'offset': [numbers], 'divisor': [numbers]}}") from e
        if v.size not in (1, n) or not np.all(np.isfinite(v)) or (key == "divisor" and np.any(v == 0)):
            raise ExportError(f"the checkpoint's scaler {key} has {v.size} value(s) ({v[:4].tolist()}...); "
                              f"expected 1 or {n} finite numbers" + (", none of them 0" if key == "divisor" else ""))
        out[key] = v.reshape(shape) if v.size > 1 else v
    return out


def to_onnx(model, meta: dict | None = None, *, probabilities: bool = False, dtype: str | None = None,
            input_shape=None, name: str | None = None):
    """The ``onnx.ModelProto`` of ``model`` (any backend), checked by ``onnx.checker``.

    ``meta`` is a checkpoint's meta: its ``scaler`` becomes the first nodes, its ``dataset``
    and ``class_names`` go into the metadata. ``input_shape`` is one sample's shape (default:
    the first layer's input size, e.g. ``(64,)``; ``(8, 8)`` takes digits as images).
    ``dtype`` ("float32" or "float64") defaults to the model's.
    """
    onnx = _require("onnx", "onnx")
    importlib.import_module("onnx.numpy_helper")
    from . import __version__

    meta = dict(meta or {})
    for i, layer in enumerate(model.layers):
        if type(layer) not in ONNX_FORMS:
            raise ExportError(
                f"layer {i} ({type(layer).__name__}) has no ONNX form in xpnet's export; exportable "
                f"layers: {', '.join(cls.__name__ for cls in ONNX_FORMS)}"
            )
    loss = type(model.loss_layer).__name__
    if probabilities and loss not in _PROBABILITIES:
        raise ExportError(f"a model trained with {loss} outputs values, not probabilities; export it without "
                          f"probabilities (--probabilities is for SoftmaxWithLoss and SigmoidWithLoss models)")
    dt = np.dtype(dtype or (host_dtype(model.dtype) if model.dtype is not None else "float32"))
    if dt.name not in ("float32", "float64"):
        raise ConfigError(f"ONNX export writes float32 or float64 graphs, not {dt.name}")
    shape = _input_shape(model, input_shape)
    g = _Graph(onnx, dt, 1 + len(shape))
    x = INPUT
    scaler = meta.get("scaler")
    if scaler:
        consts = _scaler(scaler, shape)
        for op, key in (("Sub", "offset"), ("Div", "divisor")):
            x = g.node(op, [x, g.const(consts[key], f"scaler {key}")])
    for i, layer in enumerate(model.layers):
        x = ONNX_FORMS[type(layer)](g, layer, x, i)
    out = SCORES
    if probabilities:
        op, attrs = _PROBABILITIES[loss]
        x, out = g.node(op, [x], **attrs), PROBABILITIES
    g.nodes.append(onnx.helper.make_node("Identity", [x], [out]))
    elem = onnx.helper.np_dtype_to_tensor_dtype(dt)
    sizes = [int(np.prod(shape))] + [int(v.shape[1]) for k, v in model.params.items() if k.startswith("W")]
    title = name or meta.get("name") or f"xpnet {meta.get('dataset') or 'model'} " + "-".join(map(str, sizes))
    graph = onnx.helper.make_graph(
        g.nodes, title, [onnx.helper.make_tensor_value_info(INPUT, elem, ["N", *shape])],
        [onnx.helper.make_tensor_value_info(out, elem, ["N", None])], g.inits,
    )
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="xpnet", producer_version=__version__,
        doc_string=f"{title}: raw features in, {out} out (see metadata_props)",
    )
    props = {
        "name": title,
        "dataset": str(meta.get("dataset") or ""),
        "class_names": json.dumps(meta.get("class_names") or []),
        "xpnet_version": __version__,
        "loss": loss,
        "output": out,
        "dtype": dt.name,
        "scaler": json.dumps(scaler or None),
    }
    onnx.helper.set_model_props(proto, props)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the ONNX graph built for this model does not pass onnx.checker: {e}") from e
    return proto


def save_onnx(path, model, meta: dict | None = None, **options) -> Path:
    """Write :func:`to_onnx` of ``model`` to ``path`` atomically; ``options`` as for :func:`to_onnx`."""
    return _write(path, to_onnx(model, meta, **options).SerializeToString())


# ---------------------------------------------------------------------- safetensors
def safetensors_bytes(desc: dict, arrays: dict) -> bytes:
    """A safetensors file of ``arrays`` with ``desc`` (JSON) in its header metadata."""
    st = _require("safetensors.numpy", "safetensors")
    text = json.dumps(desc, allow_nan=True)
    return st.save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={C.META_KEY: text})


def save_safetensors(path, model, optimizer=None, meta: dict | None = None) -> Path:
    """What :func:`xpnet.checkpoint.save` writes, as a safetensors file (same names, same description)."""
    with np.load(io.BytesIO(C.to_bytes(model, optimizer, meta)), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    desc = json.loads(arrays.pop(C.META_KEY).tobytes().decode("utf-8"))
    return _write(path, safetensors_bytes(desc, arrays))


def is_safetensors(path) -> bool:
    """True for a name ending in ``.safetensors`` or a file that starts like one (8-byte length, ``{``)."""
    if os.fspath(path).endswith(".safetensors"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"


def read_safetensors(path) -> tuple[dict, dict]:
    """``(description, host arrays)`` of a safetensors checkpoint, as :func:`xpnet.checkpoint.read`
    gives them for an ``.npz``; the caller runs the checkpoint's own checks on them."""
    where = os.fspath(path)
    safetensors = _require("safetensors", "safetensors")
    try:
        with safetensors.safe_open(where, framework="numpy") as f:
            header = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {where!r}: {e}") from e
    except Exception as e:  # SafetensorError: a bad header, a truncated file, an unknown dtype
        raise CheckpointError(
            f"{where!r} is corrupted, truncated or not a safetensors file ({type(e).__name__}: {e})"
        ) from e
    if C.META_KEY not in header:
        raise CheckpointError(
            f"{where!r} is a safetensors file but not an xpnet checkpoint: its metadata has no "
            f"{C.META_KEY!r} entry (metadata keys: {sorted(header)[:8]}); write one with "
            f"xpnet export CHECKPOINT --format safetensors"
        )
    try:
        desc = json.loads(header[C.META_KEY])
    except ValueError as e:
        raise CheckpointError(f"{where!r}: the JSON description is unreadable ({e})") from e
    return desc, arrays  # checked by xpnet.checkpoint.read, as an .npz's


# ---------------------------------------------------------------------- a checkpoint file
def _write(path, data: bytes) -> Path:
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{os.fspath(path)!r} is a folder; give a file name to write the export to")
    try:
        return C.write_atomic(path, data)
    except OSError as e:
        raise OutputError(f"cannot write {os.fspath(path)!r}: {e}; free some space or choose another file") from e


def export(checkpoint, format: str, out=None, *, probabilities: bool = False, dtype: str | None = None,
           input_shape=None) -> dict:
    """Export a checkpoint file (``.npz`` or ``.safetensors``) as ``format`` to ``out``
    (default: the checkpoint's name with ``.onnx`` / ``.safetensors``); what ``xpnet export`` runs.

    The checkpoint is read and checked as ``xpnet eval`` reads it. Returns a summary:
    ``path``, ``format``, ``dtype`` and ``rounded_from`` ("float64" when float64 weights went into a
    float32 graph, else None).
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; valid formats: {', '.join(FORMATS)}")
    if format == "safetensors" and (probabilities or dtype or input_shape):
        raise ConfigError("safetensors keeps the checkpoint's arrays as they are, bit for bit: "
                          "probabilities, dtype and input_shape apply to the onnx format only")
    src = Path(checkpoint)
    out = Path(out) if out is not None else src.with_suffix("." + format)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise ConfigError(f"the export would overwrite the checkpoint {os.fspath(src)!r}; pass another --out")
    _require("onnx" if format == "onnx" else "safetensors", "onnx" if format == "onnx" else "safetensors")
    if format == "safetensors":
        desc, arrays = C.read(src)
        _write(out, safetensors_bytes(desc, arrays))
        return {"path": out, "format": format, "dtype": desc.get("dtype"), "rounded_from": None}
    model, _, meta = C.load(src, backend="numpy")
    saved = host_dtype(model.dtype).name if model.dtype is not None else None
    proto = to_onnx(model, meta, probabilities=probabilities, dtype=dtype or saved, input_shape=input_shape)
    _write(out, proto.SerializeToString())
    graph_dtype = dtype or saved or "float32"
    return {"path": out, "format": format, "dtype": graph_dtype,
            "rounded_from": saved if (saved, graph_dtype) == ("float64", "float32") else None}
