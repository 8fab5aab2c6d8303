"""One entry per layer type: all that xpnet knows of a layer besides its class.

An entry (:class:`LayerType`) holds the layer's class and

- its **naming**: the names of its parameters and saved state, which a model numbers in layer
  order (the first Affine's ``W`` and ``b`` are ``W1`` and ``b1``, the second's ``W2`` and ``b2``:
  :func:`numbered`);
- its **checkpoint description**: the config fields with their checks, the rule its arrays'
  shapes follow, and how the layer is built again from a checkpoint's arrays;
- its **ONNX form**: a function that adds the layer's nodes to an export graph (None: no export);
- its **activation name**, when ``mlp(activation=...)`` may choose it.

``xpnet.checkpoint``, ``xpnet.export``, ``Sequential.params`` and ``mlp`` read these entries, so a
new layer type is its class plus one entry, as the convolution's::

    register(LayerType(
        Convolution, params=("W", "b"), config={"stride": S.integer(1), "pad": S.integer(0)},
        build=lambda config, p, s, rng: Convolution(p["W"], p["b"], config["stride"], config["pad"]),
        shapes=_conv_shapes,  # (param shapes, input width, layer index, config) -> (output width, state shapes)
        onnx=_conv_onnx,      # (graph, layer, input name, layer index) -> output name
    ))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import conv as K
from . import layers as L
from . import recurrent as R
from . import schema as S
from . import sequence as Q
from .backend import to_numpy


@dataclass(frozen=True)
class LayerType:
    """What xpnet knows of one layer class; see the module's docstring."""

    cls: type
    params: tuple = ()  # parameter names, numbered model-wide (W -> W1, W2...)
    state: tuple = ()  # saved arrays that are not trained, numbered the same way
    config: dict = field(default_factory=dict)  # config field -> check (xpnet.schema)
    build: Callable | None = None  # (config, params, state, rng) -> layer; default cls()
    shapes: Callable | None = None  # (param shapes, width in, index, config) -> (width out, state shapes)
    onnx: Callable | None = None  # (graph, layer, input name, index) -> output name
    activation: str | None = None  # its name for mlp(activation=...)

    @property
    def name(self) -> str:
        return self.cls.__name__

    def rebuild(self, config: dict, params: dict, state: dict, rng=None):
        """The layer from a checkpoint's config, arrays and random generator (checked already)."""
        return self.cls() if self.build is None else self.build(config, params, state, rng)

    def check_shapes(self, params: dict, width, i: int, config: dict | None = None) -> tuple:
        """``(width out, {state name: shape})`` from the described parameter shapes and config, or
        :class:`~xpnet.schema.Invalid`; ``width`` is what the layer before gives: a feature count,
        a tuple ``(C, H, W)`` for images, or None (unknown)."""
        return (width, {}) if self.shapes is None else self.shapes(params, width, i, config or {})


def numbered(names_per_layer) -> list[dict]:
    """For each layer, its array names mapped to the model's flat keys: the n-th layer holding a
    name gets ``name + str(n)`` (``W1``, ``b1``, ``gamma1``, ``W2``...)."""
    counts: dict[str, int] = {}
    out = []
    for names in names_per_layer:
        keys = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
            keys[name] = f"{name}{counts[name]}"
        out.append(keys)
    return out


# ---------------------------------------------------------------------- shape rules
def features(width):
    """A width as a feature count: images (C, H, W) flattened to C*H*W; None stays None."""
    return math.prod(width) if isinstance(width, tuple) else width


def _matrix_shapes(p: dict, width, i: int, config: dict) -> tuple:
    if len(p["W"]) != 2 or ("b" in p and p["b"] != p["W"][1:]):
        S.fail(f"layers[{i}].params", "W of shape [in, out] (and b of shape [out])", p)
    width = features(width)
    if width is not None and p["W"][0] != width:
        raise S.Invalid(f"layers[{i}] takes {p['W'][0]} features but the layer before gives {width}")
    return p["W"][1], {}


def _feature_shapes(p: dict, width, i: int, config: dict) -> tuple:
    width = features(width)
    if len(p["gamma"]) != 1 or p["beta"] != p["gamma"] or width not in (None, p["gamma"][0]):
        S.fail(f"layers[{i}].params", f"gamma and beta of shape [{width or 'features'}]", p)
    return p["gamma"][0], {"running_mean": p["gamma"], "running_var": p["gamma"]}


def _image(width, i: int, what: str):
    if width is not None and not isinstance(width, tuple):
        raise S.Invalid(f"layers[{i}] ({what}) takes images (C, H, W), but the layer before gives {width} "
                        f"flat features")
    return width


def _window_out(width: tuple, fh: int, fw: int, sh: int, sw: int, pad: int, i: int, what: str) -> tuple:
    c, h, w = width
    if fh > h + 2 * pad or fw > w + 2 * pad:
        raise S.Invalid(f"layers[{i}] ({what}) has a {fh}x{fw} window, larger than its {h}x{w} input padded "
                        f"by {pad}")
    return c, (h + 2 * pad - fh) // sh + 1, (w + 2 * pad - fw) // sw + 1


def _conv_shapes(p: dict, width, i: int, config: dict) -> tuple:
    if len(p["W"]) != 4 or p["b"] != p["W"][:1] or min(p["W"]) < 1:
        S.fail(f"layers[{i}].params", "W of shape [filters, channels, height, width] (all >= 1) and b of "
               "shape [filters]", p)
    fn, c, fh, fw = p["W"]
    if _image(width, i, "Convolution") is None:
        return None, {}
    if width[0] != c:
        raise S.Invalid(f"layers[{i}] (Convolution) takes {c} channel(s) but the layer before gives {width[0]}")
    s = config.get("stride", 1)
    return (fn, *_window_out(width, fh, fw, s, s, config.get("pad", 0), i, "Convolution")[1:]), {}


def _pool_shapes(p: dict, width, i: int, config: dict) -> tuple:
    if _image(width, i, "Pooling") is None:
        return None, {}
    fh, fw = config["pool_h"], config["pool_w"]
    sh, sw = (fh, fw) if config["stride"] is None else (config["stride"],) * 2
    return _window_out(width, fh, fw, sh, sw, config["pad"], i, "Pooling"), {}


def _flatten_shapes(p: dict, width, i: int, config: dict) -> tuple:
    return features(width), {}


def _table_shapes(p: dict, width, i: int, config: dict) -> tuple:
    """An embedding's W (vocabulary, dimension): word indices in, vectors of its dimension out."""
    if len(p["W"]) != 2:
        S.fail(f"layers[{i}].params", "W of shape [vocabulary, dimension]", p)
    return p["W"][1], {}


def _bias_shapes(p: dict, width, i: int, config: dict) -> tuple:
    """A tied output layer's b (vocabulary,): its weight is the embedding's table, so what comes in is
    checked by the model that ties them."""
    if len(p["b"]) != 1:
        S.fail(f"layers[{i}].params", "b of shape [vocabulary]", p)
    return p["b"][0], {}


def _cell_shapes(gates: int, suffixes=("",)):
    """Wx [in, gates*H], Wh [H, gates*H], b [gates*H] per direction; out: H per direction."""

    def rule(p: dict, width, i: int, config: dict) -> tuple:
        first = p["Wx" + suffixes[0]]
        for sx in suffixes:
            Wx, Wh, b = p["Wx" + sx], p["Wh" + sx], p["b" + sx]
            H = Wh[0] if len(Wh) == 2 else -1
            if len(Wx) != 2 or Wx != first or Wh != [H, gates * H] or Wx[1] != gates * H or b != [gates * H]:
                S.fail(f"layers[{i}].params", f"Wx [in, {gates}H], Wh [H, {gates}H] and b [{gates}H]", p)
        if width is not None and first[0] != width:
            raise S.Invalid(f"layers[{i}] takes {first[0]} features but the layer before gives {width}")
        return len(suffixes) * (first[1] // gates), {}

    return rule


# ---------------------------------------------------------------------- ONNX forms
# ``g`` is the export's graph (xpnet.export): ``g.node(op, inputs, **attrs)`` and ``g.const(array,
# what)`` give the names of a new node's output and of a constant; ``g.flatten(x)`` makes x 2-D.
def _affine_onnx(g, layer, x: str, i: int) -> str:
    x = g.flatten(x)
    y = g.node("MatMul", [x, g.const(layer.params["W"], f"W of layer {i} (Affine)")])
    return g.node("Add", [y, g.const(layer.params["b"], f"b of layer {i} (Affine)")])


def _matmul_onnx(g, layer, x: str, i: int) -> str:
    return g.node("MatMul", [x, g.const(layer.params["W"], f"W of layer {i} (MatMul)")])


def _batchnorm_onnx(g, layer, x: str, i: int) -> str:
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


def _dropout_onnx(g, layer, x: str, i: int) -> str:
    return g.node("Mul", [x, g.const(np.asarray(1.0 - layer.ratio), f"keep of layer {i} (Dropout)")])


def _conv_onnx(g, layer, x: str, i: int) -> str:
    fh, fw = (int(n) for n in layer.params["W"].shape[2:])
    p, s = layer.pad, layer.stride
    w, b = (g.const(layer.params[k], f"{k} of layer {i} (Convolution)") for k in ("W", "b"))
    return g.node("Conv", [x, w, b], kernel_shape=[fh, fw], strides=[s, s], pads=[p, p, p, p])


def _pool_onnx(g, layer, x: str, i: int) -> str:
    """MaxPool or AveragePool; padding is a Pad node of zeros first, as the layer pads (ONNX's own
    pads would leave max-pooling's padding out and, for the mean, count it or not by an option)."""
    p = layer.pad
    if p:
        pads = g.int_const([0, 0, p, p, 0, 0, p, p], f"pads of layer {i} (Pooling)")
        x = g.node("Pad", [x, pads], mode="constant")
    op = "MaxPool" if layer.mode == "max" else "AveragePool"
    return g.node(op, [x], kernel_shape=[layer.pool_h, layer.pool_w], strides=list(layer.strides))


def _elementwise(op: str, **attrs):
    return lambda g, layer, x, i: g.node(op, [x], **attrs)


# ---------------------------------------------------------------------- the entries
LAYER_TYPES: dict[str, LayerType] = {}  # type name -> entry, in the order checkpoints list them
ACTIVATIONS: dict[str, type] = {}  # mlp's activation name -> layer class
_BY_CLASS: dict[type, LayerType] = {}


def register(entry: LayerType) -> LayerType:
    """Add a layer type (or replace the entry of its name)."""
    LAYER_TYPES[entry.name] = _BY_CLASS[entry.cls] = entry
    if entry.activation:
        ACTIVATIONS[entry.activation] = entry.cls
    return entry


def layer_type(layer) -> LayerType | None:
    """The entry of ``layer``'s exact class (None for a class with no entry, a subclass too)."""
    return _BY_CLASS.get(type(layer))


for _entry in (
    LayerType(L.Affine, params=("W", "b"), build=lambda c, p, s, rng: L.Affine(p["W"], p["b"]),
              shapes=_matrix_shapes, onnx=_affine_onnx),
    LayerType(L.MatMul, params=("W",), build=lambda c, p, s, rng: L.MatMul(p["W"]),
              shapes=_matrix_shapes, onnx=_matmul_onnx),
    LayerType(L.Repeat, config={"n": S.integer(1)}, build=lambda c, p, s, rng: L.Repeat(c["n"])),
    LayerType(L.Sum),
    LayerType(L.ReLU, onnx=_elementwise("Relu"), activation="relu"),
    LayerType(L.Sigmoid, onnx=_elementwise("Sigmoid"), activation="sigmoid"),
    LayerType(L.Tanh, onnx=_elementwise("Tanh"), activation="tanh"),
    LayerType(L.Softmax, onnx=_elementwise("Softmax", axis=-1)),
    LayerType(L.Dropout, config={"ratio": S.FRACTION}, build=lambda c, p, s, rng: L.Dropout(c["ratio"], rng),
              onnx=_dropout_onnx),
    LayerType(L.BatchNormalization, params=("gamma", "beta"), state=("running_mean", "running_var"),
              config={"momentum": S.FRACTION_CLOSED, "eps": S.POSITIVE},
              build=lambda c, p, s, rng: L.BatchNormalization(p["gamma"], p["beta"], c["momentum"],
                                                               s["running_mean"], s["running_var"], c["eps"]),
              shapes=_feature_shapes, onnx=_batchnorm_onnx),
    LayerType(K.Convolution, params=("W", "b"), config={"stride": S.integer(1), "pad": S.integer(0)},
              build=lambda c, p, s, rng: K.Convolution(p["W"], p["b"], c["stride"], c["pad"]),
              shapes=_conv_shapes, onnx=_conv_onnx),
    LayerType(K.Pooling, config={"pool_h": S.integer(1), "pool_w": S.integer(1), "stride": S.optional(S.integer(1)),
                                 "pad": S.integer(0), "mode": S.one_of(K.POOL_MODES)},
              build=lambda c, p, s, rng: K.Pooling(c["pool_h"], c["pool_w"], c["stride"], c["pad"], c["mode"]),
              shapes=_pool_shapes, onnx=_pool_onnx),
    LayerType(K.Flatten, shapes=_flatten_shapes, onnx=lambda g, layer, x, i: g.flatten(x)),
):
    register(_entry)

# the sequence layers of the second book: checkpoints, no ONNX form (export refuses, naming the layer)
_STATEFUL = {"stateful": S.kind((bool,), "true or false")}
for _entry in (
    LayerType(Q.Embedding, params=("W",), build=lambda c, p, s, rng: Q.Embedding(p["W"]), shapes=_table_shapes),
    LayerType(Q.TimeEmbedding, params=("W",), build=lambda c, p, s, rng: Q.TimeEmbedding(p["W"]),
              shapes=_table_shapes),
    LayerType(Q.TimeAffine, params=("W", "b"), build=lambda c, p, s, rng: Q.TimeAffine(p["W"], p["b"]),
              shapes=_matrix_shapes),
    LayerType(Q.TimeTiedAffine, params=("b",), build=lambda c, p, s, rng: Q.TimeTiedAffine(p["b"]),
              shapes=_bias_shapes),
    LayerType(Q.TimeDropout, config={"ratio": S.FRACTION}, build=lambda c, p, s, rng: Q.TimeDropout(c["ratio"], rng)),
    *(LayerType(cls, params=("Wx", "Wh", "b"), config=_STATEFUL, shapes=_cell_shapes(cls.gates),
                build=lambda c, p, s, rng, cls=cls: cls(p["Wx"], p["Wh"], p["b"], c["stateful"]))
      for cls in (R.TimeRNN, R.TimeLSTM, R.TimeGRU)),
    LayerType(R.TimeBiLSTM, params=R.TimeBiLSTM.NAMES, shapes=_cell_shapes(4, ("_f", "_r")),
              build=lambda c, p, s, rng: R.TimeBiLSTM(*(p[k] for k in R.TimeBiLSTM.NAMES))),
):
    register(_entry)
del _entry
