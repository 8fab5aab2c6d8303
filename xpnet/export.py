"""A trained model for other tools: an ONNX graph (onnxruntime) and safetensors weights (PyTorch).

Needs the ``export`` extra (``pip install 'xpnet[export]'``: onnx, onnxruntime, safetensors);
they are imported only when an export runs, never by ``import xpnet``.

**ONNX** (opset :data:`OPSET`, IR version :data:`IR_VERSION`, batch axis dynamic): one small
function per layer type (its entry's ``onnx`` in :mod:`xpnet.registry`) builds its nodes with the
``onnx`` helpers, walking the same layer list the model walks. The graph starts with the
dataset's scaling ``(x - offset) / divisor`` so it takes the raw features ``xpnet predict``
takes, and ends with scores, or with probabilities
(Softmax, or Sigmoid for a one-output binary classifier) when asked. Layers: Affine (N-D input
flattened, as the layer does), MatMul, ReLU, Sigmoid, Tanh, Softmax, BatchNormalization in
evaluation form (running statistics; the layer's eps added to the running variance), Dropout in evaluation form
(``x * (1 - ratio)``), Convolution (Conv), Pooling (MaxPool or AveragePool, after a Pad node of
zeros when the layer pads), Flatten. Repeat and Sum change the batch axis and have no export: an error says so.
The graph's float type is the model's unless ``dtype`` is given; float64 weights exported as
float32 are rounded to the nearest float32 (a documented conversion: scores then agree with
xpnet's to float32 precision), and a weight beyond float32's range is refused.

**safetensors**: the arrays of an xpnet checkpoint under the same names (``param/W1``,
``state/running_mean1``, ``opt/m/W1``...) with xpnet's JSON description in the header metadata
under ``__xpnet__`` (read and written by :mod:`xpnet.safetensors_io`, whose functions this
module re-exports). :func:`read_safetensors` gives back exactly what :func:`xpnet.checkpoint.read`
gives for an ``.npz``, so ``xpnet eval``, ``predict`` and ``train --resume`` take either file,
bit for bit in float64.
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
from .atomic import write_atomic
from .backend import host_dtype, to_numpy
from .errors import ConfigError, OutputError, XPNetError
from .registry import LAYER_TYPES, layer_type
from .safetensors_io import (  # noqa: F401 (is_safetensors, read_safetensors: part of this module's API)
    ExportUnavailableError,
    is_safetensors,
    read_safetensors,
    safetensors_bytes,
)
from .safetensors_io import require as _require
from .schema import META_KEY

OPSET = 21
IR_VERSION = 10  # what onnxruntime 1.20 and later read
FORMATS = ("onnx", "safetensors")
INPUT, SCORES, PROBABILITIES = "x", "scores", "probabilities"


class ExportError(XPNetError, ValueError):
    """A model that cannot be exported as asked (a layer with no ONNX form, weights out of range)."""


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

    def int_const(self, values, what: str) -> str:
        """An int64 initializer (shapes, pads)."""
        name = self.name(what.split(" ")[0])
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
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


_PROBABILITIES = {"SoftmaxWithLoss": ("Softmax", {"axis": -1}), "SigmoidWithLoss": ("Sigmoid", {})}


def _input_shape(model, given) -> list[int]:
    """One sample's shape: ``given``, checked against the model's input shape or the first layer with
    weights, or that shape or size."""
    fixed = getattr(model, "input_shape", None)
    if fixed is not None:
        if given is not None and tuple(int(s) for s in given) != fixed:
            raise ExportError(f"input_shape {tuple(given)} differs from the model's input shape {fixed}; "
                              f"leave it out or pass {fixed}")
        return list(fixed)
    first = model.first_param_layer
    image = first is not None and next(iter(first.params.values())).ndim == 4
    if image and given is None:
        raise ExportError(f"the model starts with a {type(first).__name__} and does not say its input's "
                          f"shape; pass input_shape=(channels, height, width)")
    if first is None:
        if given is None:
            raise ExportError("the model has no layer with weights, so its input size is unknown; "
                              "pass input_shape=(features,)")
        return [int(s) for s in given]
    size = int(next(iter(first.params.values())).shape[0])
    if given is None:
        return [size]
    shape = [int(s) for s in given]
    if image:
        return shape  # images: the graph's shape check (ONNX) is the convolution's own
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


def _onnx_form(layer, i: int):
    """The function that adds ``layer``'s nodes to the graph (its registry entry's), or ExportError."""
    entry = layer_type(layer)
    if entry is None or entry.onnx is None:
        exportable = [e.name for e in LAYER_TYPES.values() if e.onnx is not None]
        raise ExportError(
            f"layer {i} ({type(layer).__name__}) has no ONNX form in xpnet's export; exportable "
            f"layers: {', '.join(exportable)}"
        )
    return entry.onnx


def _add_nodes(g: _Graph, model, forms: list, scaler, shape: list, head) -> tuple[str, str]:
    """The scaler's nodes, each layer's, then ``head`` (``(op, attrs)`` giving probabilities) if
    any; returns the last node's output and the name of the graph's output."""
    x = INPUT
    if scaler:
        consts = _scaler(scaler, shape)
        for op, key in (("Sub", "offset"), ("Div", "divisor")):
            x = g.node(op, [x, g.const(consts[key], f"scaler {key}")])
    for i, (layer, form) in enumerate(zip(model.layers, forms, strict=True)):
        x = form(g, layer, x, i)
    if head is None:
        return x, SCORES
    op, attrs = head
    return g.node(op, [x], **attrs), PROBABILITIES


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
    forms = [_onnx_form(layer, i) for i, layer in enumerate(model.layers)]
    loss = type(model.loss_layer).__name__
    if probabilities and loss not in _PROBABILITIES:
        raise ExportError(f"a model trained with {loss} outputs values, not probabilities; export it without "
                          f"probabilities (--probabilities is for SoftmaxWithLoss and SigmoidWithLoss models)")
    dt = np.dtype(dtype or (host_dtype(model.dtype) if model.dtype is not None else "float32"))
    if dt.name not in ("float32", "float64"):
        raise ConfigError(f"ONNX export writes float32 or float64 graphs, not {dt.name}")
    shape = _input_shape(model, input_shape)
    g = _Graph(onnx, dt, 1 + len(shape))
    scaler = meta.get("scaler")
    x, out = _add_nodes(g, model, forms, scaler, shape, _PROBABILITIES[loss] if probabilities else None)
    g.nodes.append(onnx.helper.make_node("Identity", [x], [out]))
    elem = onnx.helper.np_dtype_to_tensor_dtype(dt)
    sizes = [int(np.prod(shape))] + [int(W.shape[1]) for W in model.weight_matrices()]
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
def save_safetensors(path, model, optimizer=None, meta: dict | None = None) -> Path:
    """What :func:`xpnet.checkpoint.save` writes, as a safetensors file (same names, same description)."""
    with np.load(io.BytesIO(C.to_bytes(model, optimizer, meta)), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    desc = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    return _write(path, safetensors_bytes(desc, arrays))


# ---------------------------------------------------------------------- a checkpoint file
def _write(path, data: bytes) -> Path:
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{os.fspath(path)!r} is a folder; give a file name to write the export to")
    try:
        return write_atomic(path, data)
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
