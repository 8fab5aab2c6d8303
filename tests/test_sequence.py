"""Word and sequence layers (xpnet.sequence, xpnet.recurrent, xpnet.attention): forward and
backward against float64 NumPy references written from the book's formulas, gradient checks
by central differences, and the errors for bad input."""

import numpy as np
import pytest
import reference as ref
from conftest import assert_close

import xpnet
from xpnet import backend as B
from xpnet.sequence import Embedding, TimeEmbedding


def _idx(be, a):
    """Integer host array ``a`` on the row's device (integers keep their dtype)."""
    return be.asarray(np.asarray(a))


def _exact(be):
    """A backend like ``be`` for gradient checks: float64 where the device has it."""
    if be.supports_float64:
        return B.resolve(be.name, B.device_label(be.device), "float64"), 1e-6, 1e-6
    return be, 5e-2, 1e-2


def gradient_check(be, run, arrays: dict, out_shape, rng, skip=()):
    """Worst relative error per array between backprop and central differences.

    ``run(be, arrays)`` builds the layer from the host arrays, runs forward and returns
    ``(out, backward)``; ``backward(dout)`` returns a dict of gradients keyed like ``arrays``
    (those in ``skip``, e.g. integer indices, are not checked). The loss is ``sum(out * R)``.
    """
    be, bound, eps = _exact(be)
    R = rng.standard_normal(out_shape)
    out, backward = run(be, arrays)
    grads = {k: B.to_numpy(v) for k, v in backward(be.asarray(R)).items()}
    worst = {}
    for key, a in arrays.items():
        if key in skip:
            continue
        num = np.zeros(a.shape)
        for i in np.ndindex(a.shape):
            vals = []
            for sign in (1, -1):
                b = a.copy()
                b[i] += sign * eps
                o, _ = run(be, {**arrays, key: b})
                vals.append(float(np.sum(B.to_numpy(o).astype(np.float64) * R)))
            num[i] = (vals[0] - vals[1]) / (2 * eps)
        g = grads[key]
        assert g.shape == a.shape, (key, g.shape, a.shape)
        worst[key] = float(np.max(np.abs(g - num) / np.maximum(np.abs(g) + np.abs(num), 1e-5)))
    assert max(worst.values()) < bound, worst
    return worst


# ---------------------------------------------------------------------- scatter-add, Embedding
@pytest.mark.parametrize("form", ["native", "sorted"])
def test_scatter_add_accumulates_repeated_indices(be, rng, form):
    idx = np.array([3, 0, 3, 3, 5, 0, 1])
    values = rng.standard_normal((7, 4))
    expected = ref.embedding_backward((6, 4), idx, values)
    v, i = be.asarray(values), _idx(be, idx)
    out = B.scatter_add((6, 4), i, v) if form == "native" else B.scatter_add_sorted(be.xp, (6, 4), i, v)
    assert_close(out, expected, be)
    assert float(B.to_numpy(out)[3].sum()) == pytest.approx(values[[0, 2, 3]].sum(), rel=1e-5)


def test_embedding_forward_takes_rows_and_backward_accumulates_repeats(be, rng):
    W, idx = rng.standard_normal((7, 3)), np.array([[1, 4, 1], [6, 1, 0]])
    dout = rng.standard_normal((2, 3, 3))
    for cls in (Embedding, TimeEmbedding):
        layer = cls(be.asarray(W))
        assert_close(layer.forward(_idx(be, idx)), W[idx], be)
        assert layer.backward(be.asarray(dout)) is None
        assert_close(layer.grads["W"], ref.embedding_backward(W.shape, idx, dout), be)
    flat = Embedding(be.asarray(W))
    assert_close(flat.forward(_idx(be, idx[0])), W[idx[0]], be)


def test_embedding_gradient_check(be, rng):
    idx = np.array([[2, 0, 2], [2, 3, 0]])

    def run(b, a):
        layer = TimeEmbedding(b.asarray(a["W"]))
        out = layer.forward(_idx(b, idx))
        return out, lambda d: (layer.backward(d), layer.grads)[1]

    gradient_check(be, run, {"W": rng.standard_normal((4, 3))}, (2, 3, 3), rng)


def test_embedding_create_is_the_books_draw_on_every_backend(be):
    layer = Embedding.create(5, 3, rng=3, backend=be)
    assert_close(layer.params["W"], np.random.default_rng(3).standard_normal((5, 3)) * 0.01, be)


def test_embedding_refuses_bad_indices(be):
    layer = TimeEmbedding(be.asarray(np.zeros((5, 2))))
    with pytest.raises(xpnet.DTypeError, match="indices must be integers.*float"):
        layer.forward(be.asarray(np.zeros((2, 3))))
    with pytest.raises(IndexError, match=r"\[0, 4\].*from 0 to 5"):
        layer.forward(_idx(be, [[0, 5]]))
    with pytest.raises(IndexError, match="from -1 to 2"):
        layer.forward(_idx(be, [[-1, 2]]))
    with pytest.raises(xpnet.ShapeError, match=r"TimeEmbedding expects word indices of shape \(N, T\)"):
        layer.forward(_idx(be, [1, 2]))
    with pytest.raises(xpnet.DTypeError, match="integer array, got list"):
        layer.forward([[1, 2]])
    with pytest.raises(xpnet.ShapeError, match="W of shape"):
        Embedding(be.asarray(np.zeros(5)))
    layer.forward(_idx(be, [[1, 2]]))
    with pytest.raises(xpnet.ShapeError, match="dout has shape"):
        layer.backward(be.asarray(np.zeros((1, 2, 3))))


def test_embedding_takes_narrow_integer_indices(be, rng):
    W = rng.standard_normal((4, 2))
    layer = Embedding(be.asarray(W))
    assert_close(layer.forward(be.asarray(np.array([3, 1, 3], dtype=np.int32))), W[[3, 1, 3]], be)
    assert_close(layer.forward(be.asarray(np.array([3, 1], dtype=np.int16))), W[[3, 1]], be)
