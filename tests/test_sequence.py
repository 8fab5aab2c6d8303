"""Word and sequence layers (xpnet.sequence, xpnet.recurrent, xpnet.attention): forward and
backward against float64 NumPy references written from the book's formulas, gradient checks
by central differences, and the errors for bad input."""

import numpy as np
import pytest
import reference as ref
from conftest import assert_close

import xpnet
from xpnet import backend as B
from xpnet.attention import Attention, AttentionWeight, TimeAttention, WeightSum
from xpnet.optimizers import clip_grads
from xpnet.recurrent import TimeBiLSTM, TimeGRU, TimeLSTM, TimeRNN
from xpnet.sequence import (
    Embedding,
    EmbeddingDot,
    NegativeSamplingLoss,
    TimeAffine,
    TimeDropout,
    TimeEmbedding,
    TimeSoftmaxWithLoss,
    UnigramSampler,
)

N, T, D, H, V = 2, 3, 2, 3, 5  # tiny, and the same shapes throughout (jax compiles per shape)


def _idx(be, a):
    """Integer host array ``a`` on the row's device (integers keep their dtype)."""
    return be.asarray(np.asarray(a))


def _exact(be):
    """A backend like ``be`` for gradient checks: float64 where the device has it."""
    if be.supports_float64:
        return B.resolve(be.name, B.device_label(be.device), "float64"), 1e-6, 1e-6
    return be, 5e-2, 1e-2


def gradient_check(be, run, arrays: dict, out_shape, rng, skip=(), directions: int = 2):
    """Worst relative error between backprop and central differences along random directions.

    ``run(be, arrays)`` builds the layer from the host arrays, runs forward and returns
    ``(out, backward)``; ``backward(dout)`` returns a dict of gradients keyed like ``arrays``
    (those in ``skip``, e.g. integer indices, are not checked). The loss is ``sum(out * R)``.
    Every checked array moves at once along a random direction ``v``:
    ``(L(a + eps v) - L(a - eps v)) / 2 eps`` is compared with ``sum(grad * v)`` over the arrays.
    Two forward passes per direction, not per element (a dask or jax forward is costly); a
    wrong gradient element changes the projection on any random direction.
    """
    be, bound, eps = _exact(be)
    R = rng.standard_normal(out_shape)
    out, backward = run(be, arrays)
    grads = {k: B.to_numpy(v).astype(np.float64) for k, v in backward(be.asarray(R)).items()}
    keys = [k for k in arrays if k not in skip]
    for k in keys:
        assert grads[k].shape == arrays[k].shape, (k, grads[k].shape, arrays[k].shape)
    errors = []
    for _ in range(directions):
        v = {k: rng.standard_normal(arrays[k].shape) for k in keys}
        vals = [float(np.sum(B.to_numpy(run(be, {**arrays, **{k: arrays[k] + sign * eps * v[k] for k in keys}})[0])
                             * R)) for sign in (1, -1)]
        num, ana = (vals[0] - vals[1]) / (2 * eps), sum(float(np.sum(grads[k] * v[k])) for k in keys)
        errors.append(abs(num - ana) / max(abs(num) + abs(ana), 1e-5))
    assert max(errors) < bound, errors
    return max(errors)


# ---------------------------------------------------------------------- scatter-add, Embedding
@pytest.mark.parametrize("form", ["native", "sorted"])
def test_scatter_add_accumulates_repeated_indices(be, rng, form):
    idx = np.array([3, 0, 3, 3, 4, 0])
    values = rng.standard_normal((N * T, H))
    expected = ref.embedding_backward((V, H), idx, values)
    v, i = be.asarray(values), _idx(be, idx)
    out = B.scatter_add((V, H), i, v) if form == "native" else B.scatter_add_sorted(be.xp, (V, H), i, v)
    assert_close(out, expected, be)
    assert float(B.to_numpy(out)[3].sum()) == pytest.approx(values[[0, 2, 3]].sum(), abs=1e-5)


def test_embedding_forward_takes_rows_and_backward_accumulates_repeats(be, rng):
    W, idx = rng.standard_normal((V, H)), np.array([[1, 4, 1], [3, 1, 0]])
    dout = rng.standard_normal((N, T, H))
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

    gradient_check(be, run, {"W": rng.standard_normal((V, H))}, (N, T, H), rng)


def test_embedding_create_is_the_books_draw_on_every_backend(be):
    layer = Embedding.create(V, H, rng=3, backend=be)
    assert_close(layer.params["W"], np.random.default_rng(3).standard_normal((V, H)) * 0.01, be)


def test_embedding_refuses_bad_indices(be):
    layer = TimeEmbedding(be.asarray(np.zeros((V, H))))
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
        layer.backward(be.asarray(np.zeros((1, 2, 2))))


def test_embedding_takes_narrow_integer_indices(be, rng):
    W = rng.standard_normal((V, H))
    layer = Embedding(be.asarray(W))
    assert_close(layer.forward(be.asarray(np.array([3, 1, 3], dtype=np.int32))), W[[3, 1, 3]], be)
    assert_close(layer.forward(be.asarray(np.array([3, 1], dtype=np.int16))), W[[3, 1]], be)


# ---------------------------------------------------------------------- EmbeddingDot, negative sampling
def test_embedding_dot_forward_backward(be, rng):
    W, h, idx, dout = rng.standard_normal((V, H)), rng.standard_normal((N * T, H)), np.array([2, 4, 2, 0, 4, 2]), \
        rng.standard_normal(N * T)
    out, dh, dW = ref.embedding_dot(W, h, idx, dout)
    layer = EmbeddingDot(be.asarray(W))
    assert_close(layer.forward(be.asarray(h), _idx(be, idx)), out, be)
    assert_close(layer.backward(be.asarray(dout)), dh, be)
    assert_close(layer.grads["W"], dW, be)


def test_unigram_sampler_draws_on_the_host_without_the_target():
    corpus = np.array([0, 1, 2, 3, 4, 1, 5, 2, 4, 4, 1, 6])
    a = UnigramSampler(corpus, 0.75, 3, rng=5).get_negative_sample(np.array([1, 4, 1]))
    b = UnigramSampler(corpus, 0.75, 3, rng=5).get_negative_sample(np.array([1, 4, 1]))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 3) and a.dtype == np.int64
    for row, target in zip(a, [1, 4, 1]):
        assert target not in row and len(set(row)) == 3
    counts = np.bincount(corpus).astype(float) ** 0.75
    np.testing.assert_allclose(UnigramSampler(corpus, 0.75, 3).word_p, counts / counts.sum())
    with pytest.raises(xpnet.ConfigError, match="only 2 distinct words"):
        UnigramSampler(np.array([0, 1, 1]), sample_size=2)
    with pytest.raises(xpnet.ConfigError, match="word indices"):
        UnigramSampler(np.array([0.5, 1.0]))


def test_negative_sampling_loss_equals_the_books_columns(be, rng):
    corpus = np.array([0, 1, 2, 3, 4, 1, 2, 3, 1])
    W, h, target = rng.standard_normal((V, H)), rng.standard_normal((N * T, H)), np.array([1, 3, 0, 1, 4, 1])
    layer = NegativeSamplingLoss(be.asarray(W), corpus, sample_size=2, rng=9)
    loss = layer.forward(be.asarray(h), _idx(be, target))
    negatives = UnigramSampler(corpus, 0.75, 2, rng=9).get_negative_sample(target)  # the same draw
    want, dh, dW = ref.negative_sampling(W, h, target, negatives)
    assert_close(loss, np.asarray(want), be)
    assert_close(layer.backward(), dh, be)
    assert_close(layer.grads["W"], dW, be)
    with pytest.raises(IndexError, match="up to 4 but W has only 3 rows"):
        NegativeSamplingLoss(be.asarray(W[:3]), corpus, sample_size=2)


# ---------------------------------------------------------------------- time-distributed layers
def test_time_affine_forward_backward_and_gradient_check(be, rng):
    x, W, b, dout = (rng.standard_normal(s) for s in ((N, T, H), (H, V), (V,), (N, T, V)))
    layer = TimeAffine(be.asarray(W), be.asarray(b))
    assert_close(layer.forward(be.asarray(x)), x @ W + b, be)
    dx, dW, db = ref.affine_backward(x.reshape(N * T, H), W, dout.reshape(N * T, V))
    assert_close(layer.backward(be.asarray(dout)), dx.reshape(N, T, H), be)
    assert_close(layer.grads["W"], dW, be)
    assert_close(layer.grads["b"], db, be)

    def run(b_, a):
        layer = TimeAffine(b_.asarray(a["W"]), b_.asarray(a["b"]))
        out = layer.forward(b_.asarray(a["x"]))
        return out, lambda d: {"x": layer.backward(d), **layer.grads}

    gradient_check(be, run, {"x": x, "W": W, "b": b}, (N, T, V), rng)


def test_time_softmax_with_loss_ignores_label_minus_one(be, rng):
    xs = rng.standard_normal((N, T, V))
    ts = np.array([[1, -1, 4], [0, 2, -1]])
    layer = TimeSoftmaxWithLoss()
    loss, dx = ref.time_softmax_with_loss(xs, ts)
    assert_close(layer.forward(be.asarray(xs), _idx(be, ts)), np.asarray(loss), be)
    assert_close(layer.backward(), dx, be)
    assert float(np.abs(B.to_numpy(layer.backward())[0, 1]).max()) == 0.0  # an ignored step gets no gradient
    counted = np.array([[1, 3, 4], [0, 2, 2]])
    full, _ = ref.time_softmax_with_loss(xs, counted)
    assert_close(TimeSoftmaxWithLoss(ignore_label=-7).forward(be.asarray(xs), _idx(be, counted)),
                 np.asarray(full), be)
    onehot = np.eye(V)[counted]
    assert_close(TimeSoftmaxWithLoss().forward(be.asarray(xs), be.asarray(onehot)), np.asarray(full), be)


def test_time_softmax_with_loss_refuses_bad_targets(be, rng):
    xs = be.asarray(rng.standard_normal((N, T, V)))
    layer = TimeSoftmaxWithLoss()
    with pytest.raises(xpnet.LabelError, match=r"\[0, 4\] or equal ignore_label=-1; got values from 0 to 5"):
        layer.forward(xs, _idx(be, [[0, 5, 1], [1, 1, 1]]))
    with pytest.raises(xpnet.LabelError, match="from -2 to 1"):
        layer.forward(xs, _idx(be, [[0, -2, 1], [1, 1, 1]]))
    with pytest.raises(xpnet.LabelError, match="every target equals ignore_label"):
        layer.forward(xs, _idx(be, np.full((N, T), -1)))
    assert float(B.to_numpy(layer.forward(xs, _idx(be, np.full((N, T), -1)), check=False))) == 0.0
    with pytest.raises(xpnet.LabelError, match=r"one word index per \(n, t\)"):
        layer.forward(xs, _idx(be, [0, 1]))
    with pytest.raises(xpnet.LabelError, match="integer word indices"):
        layer.forward(xs, be.asarray(np.zeros((N, T))))
    with pytest.raises(xpnet.ShapeError, match=r"\(N, T, V\)"):
        layer.forward(be.asarray(np.zeros((N, V))), _idx(be, [0, 1]))
    with pytest.raises(xpnet.CallOrderError):
        TimeSoftmaxWithLoss().backward()


def test_time_dropout_is_the_books_inverted_dropout(be, rng):
    x = rng.standard_normal((N, T, H))
    layer = TimeDropout(0.3, rng=4)
    keep = np.random.default_rng(4).random(x.shape) > 0.3
    assert_close(layer.forward(be.asarray(x)), x * keep / 0.7, be)
    assert_close(layer.backward(be.asarray(np.ones(x.shape))), keep / 0.7, be)
    assert_close(layer.forward(be.asarray(x), train=False), x, be)
    with pytest.raises(xpnet.ConfigError, match=r"\[0, 1\)"):
        TimeDropout(1.0)


# ---------------------------------------------------------------------- recurrent layers
CELLS = [(TimeRNN, 1, ref.time_rnn), (TimeLSTM, 4, ref.time_lstm), (TimeGRU, 3, ref.time_gru)]
CELL_IDS = ["RNN", "LSTM", "GRU"]


def _cell(rng, gates, d=D, h=H):
    G = gates * h
    return rng.standard_normal((d, G)), rng.standard_normal((h, G)) * 0.5, rng.standard_normal(G)


def _reference(f, *args):
    r = f(*args)
    return (r[0],) + tuple(r[2:]) if f is ref.time_lstm else r  # the LSTM also gives c_T


@pytest.mark.parametrize("cls, gates, f", CELLS, ids=CELL_IDS)
def test_recurrent_forward_backward_equal_the_books_cell(be, rng, cls, gates, f):
    xs, dhs = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, H))
    Wx, Wh, b = _cell(rng, gates)
    layer = cls(be.asarray(Wx), be.asarray(Wh), be.asarray(b))
    hs, dxs, dWx, dWh, db, dh = _reference(f, xs, Wx, Wh, b, dhs)
    assert_close(layer.forward(be.asarray(xs)), hs, be)
    assert_close(layer.backward(be.asarray(dhs)), dxs, be)
    for name, want in (("Wx", dWx), ("Wh", dWh), ("b", db)):
        assert_close(layer.grads[name], want, be)
    assert_close(layer.dh, dh, be)


@pytest.mark.parametrize("cls, gates, f", CELLS, ids=CELL_IDS)
def test_recurrent_gradient_check(be, rng, cls, gates, f):
    Wx, Wh, b = _cell(rng, gates)

    def run(b_, a):
        layer = cls(b_.asarray(a["Wx"]), b_.asarray(a["Wh"]), b_.asarray(a["b"]))
        out = layer.forward(b_.asarray(a["xs"]))
        return out, lambda d: {"xs": layer.backward(d), **layer.grads}

    gradient_check(be, run, {"xs": rng.standard_normal((N, T, D)), "Wx": Wx, "Wh": Wh, "b": b}, (N, T, H), rng)


@pytest.mark.parametrize("cls, gates, f", CELLS, ids=CELL_IDS)
def test_stateful_layer_carries_state_across_calls(be, rng, cls, gates, f):
    xs = rng.standard_normal((N, 2 * T, D))
    Wx, Wh, b = (be.asarray(a) for a in _cell(rng, gates))
    whole = B.to_numpy(cls(Wx, Wh, b).forward(be.asarray(xs)))
    layer = cls(Wx, Wh, b, stateful=True)
    first = layer.forward(be.asarray(xs[:, :T]))
    second = layer.forward(be.asarray(xs[:, T:]))  # truncated BPTT: the next block starts where this ended
    assert_close(first, whole[:, :T], be)
    assert_close(second, whole[:, T:], be)
    layer.reset_state()
    assert_close(layer.forward(be.asarray(xs[:, T:])), B.to_numpy(cls(Wx, Wh, b).forward(be.asarray(xs[:, T:]))), be)
    plain = cls(Wx, Wh, b)
    plain.forward(be.asarray(xs[:, :T]))
    assert_close(plain.forward(be.asarray(xs[:, :T])), B.to_numpy(first), be)  # not stateful: starts at 0
    with pytest.raises(xpnet.ShapeError, match="call reset_state"):
        layer.forward(be.asarray(xs[:1, :T]))


def test_lstm_set_state_starts_from_the_given_h_and_c(be, rng):
    xs, dhs = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, H))
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    Wx, Wh, b = _cell(rng, 4)
    layer = TimeLSTM(be.asarray(Wx), be.asarray(Wh), be.asarray(b), stateful=True)
    layer.set_state(be.asarray(h0), be.asarray(c0))
    hs, c_last, dxs, dWx, dWh, db, dh = ref.time_lstm(xs, Wx, Wh, b, dhs, h0, c0)
    assert_close(layer.forward(be.asarray(xs)), hs, be)
    assert_close(layer.c, c_last, be)
    assert_close(layer.backward(be.asarray(dhs)), dxs, be)
    assert_close(layer.dh, dh, be)
    with pytest.raises(xpnet.ShapeError, match=r"set_state: h must have shape \(N, 3\)"):
        layer.set_state(be.asarray(np.zeros((N, 2))))


def test_bilstm_is_a_forward_and_a_reversed_lstm(be, rng):
    xs, dout = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, 2 * H))
    fwd, rev = _cell(rng, 4), _cell(rng, 4)
    layer = TimeBiLSTM(*(be.asarray(a) for a in (*fwd, *rev)))
    hf, _, dxf, *gf, _ = ref.time_lstm(xs, *fwd, dout[:, :, :H])
    hr, _, dxr, *gr, _ = ref.time_lstm(xs[:, ::-1], *rev, dout[:, ::-1, H:])
    assert_close(layer.forward(be.asarray(xs)), np.concatenate([hf, hr[:, ::-1]], axis=2), be)
    assert_close(layer.backward(be.asarray(dout)), dxf + dxr[:, ::-1], be)
    for name, want in zip(TimeBiLSTM.NAMES, (*gf, *gr)):
        assert_close(layer.grads[name], want, be)


def test_recurrent_layers_refuse_bad_shapes(be, rng):
    Wx, Wh, b = (be.asarray(a) for a in _cell(rng, 4))
    with pytest.raises(xpnet.ShapeError, match=r"Wx \(D, 4H\)"):
        TimeLSTM(Wx, Wh, be.asarray(np.zeros(5)))
    with pytest.raises(xpnet.ShapeError, match=r"Wx \(D, 3H\)"):
        TimeGRU(Wx, Wh, b)
    layer = TimeLSTM(Wx, Wh, b)
    with pytest.raises(xpnet.ShapeError, match=r"\(N, T, 2\)"):
        layer.forward(be.asarray(np.zeros((N, T, 3))))
    with pytest.raises(xpnet.ShapeError, match=r"\(N, T, 2\)"):
        layer.forward(be.asarray(np.zeros((N, D))))
    with pytest.raises(xpnet.CallOrderError):
        TimeLSTM(Wx, Wh, b).backward(be.asarray(np.zeros((N, T, H))))
    with pytest.raises(xpnet.DTypeError):
        TimeRNN(*(be.asarray(np.zeros(s, dtype=np.int64)) for s in ((2, 3), (3, 3), (3,))))


# ---------------------------------------------------------------------- TimeLSTM against torch.nn.LSTM
@pytest.fixture(scope="module")
def torch_lstm():
    """torch.nn.LSTM's output and autograd gradients in float64, its weights mapped from the book's
    layout ([f | g | i | o], Wx (D, 4H)) to torch's ([i | f | g | o], weight_ih (4H, D))."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    xs, dhs = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, H))
    Wx, Wh, b = _cell(rng, 4)
    order = np.concatenate([np.arange(2 * H, 3 * H), np.arange(0, H), np.arange(H, 2 * H), np.arange(3 * H, 4 * H)])
    lstm = torch.nn.LSTM(D, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(Wx[:, order].T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(Wh[:, order].T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(b[order].copy()))
        lstm.bias_hh_l0.zero_()
    x = torch.from_numpy(xs).requires_grad_(True)
    out, _ = lstm(x)
    (out * torch.from_numpy(dhs)).sum().backward()
    back = np.argsort(order)  # torch's gate blocks back to the book's
    grads = {"Wx": lstm.weight_ih_l0.grad.numpy().T[:, back], "Wh": lstm.weight_hh_l0.grad.numpy().T[:, back],
             "b": lstm.bias_ih_l0.grad.numpy()[back]}
    return (xs, dhs, Wx, Wh, b), out.detach().numpy(), x.grad.numpy(), grads


def test_time_lstm_equals_torch_lstm(be, torch_lstm):
    (xs, dhs, Wx, Wh, b), hs, dxs, grads = torch_lstm
    layer = TimeLSTM(be.asarray(Wx), be.asarray(Wh), be.asarray(b))
    assert_close(layer.forward(be.asarray(xs)), hs, be)
    assert_close(layer.backward(be.asarray(dhs)), dxs, be)
    for name, want in grads.items():
        assert_close(layer.grads[name], want, be)


# ---------------------------------------------------------------------- attention
def test_attention_equals_the_books_nodes(be, rng):
    hs, h, dout = rng.standard_normal((N, 4, H)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    c, a, dhs, dh = ref.attention(hs, h, dout)
    layer = Attention()
    assert_close(layer.forward(be.asarray(hs), be.asarray(h)), c, be)
    assert_close(layer.attention_weight, a, be)
    got_dhs, got_dh = layer.backward(be.asarray(dout))
    assert_close(got_dhs, dhs, be)
    assert_close(got_dh, dh, be)
    weight, weighted = AttentionWeight(), WeightSum()
    assert_close(weighted.forward(be.asarray(hs), weight.forward(be.asarray(hs), be.asarray(h))), c, be)


def test_time_attention_forward_backward_and_gradient_check(be, rng):
    enc, dec, dout = rng.standard_normal((N, 4, H)), rng.standard_normal((N, T, H)), rng.standard_normal((N, T, H))
    layer = TimeAttention()
    out = layer.forward(be.asarray(enc), be.asarray(dec))
    per_step = [ref.attention(enc, dec[:, t], dout[:, t]) for t in range(T)]
    assert_close(out, np.stack([r[0] for r in per_step], axis=1), be)
    assert len(layer.attention_weights) == T
    d_enc, d_dec = layer.backward(be.asarray(dout))
    assert_close(d_enc, sum(r[2] for r in per_step), be)
    assert_close(d_dec, np.stack([r[3] for r in per_step], axis=1), be)

    def run(b_, a):
        node = TimeAttention()
        out = node.forward(b_.asarray(a["enc"]), b_.asarray(a["dec"]))
        return out, lambda d: dict(zip(("enc", "dec"), node.backward(d)))

    gradient_check(be, run, {"enc": enc, "dec": dec}, (N, T, H), rng)


def test_attention_refuses_mismatched_states(be, rng):
    with pytest.raises(xpnet.ShapeError, match=r"hs of shape \(N, T, H\) and h of shape \(N, H\)"):
        Attention().forward(be.asarray(np.zeros((N, 4, H))), be.asarray(np.zeros((N, H + 1))))
    with pytest.raises(xpnet.ShapeError, match="WeightSum"):
        WeightSum().forward(be.asarray(np.zeros((N, 4, H))), be.asarray(np.zeros((N, 3))))


# ---------------------------------------------------------------------- clipping, checkpoints, export
def test_clip_grads_scales_every_gradient_by_the_global_norm(be, rng):
    a, b = rng.standard_normal((3, 2)), rng.standard_normal(4)
    norm = np.sqrt((a**2).sum() + (b**2).sum())
    grads = clip_grads({"W": be.asarray(a), "b": be.asarray(b)}, norm / 2)
    rate = (norm / 2) / (norm + 1e-6)
    assert_close(grads["W"], a * rate, be)
    assert_close(grads["b"], b * rate, be)
    kept = clip_grads([be.asarray(a), be.asarray(b)], norm * 2)  # the book's list; below the bound: unchanged
    assert_close(kept[0], a, be)
    assert_close(kept[1], b, be)
    with pytest.raises(xpnet.ConfigError, match="max_norm"):
        clip_grads({"W": be.asarray(a)}, 0.0)
    with pytest.raises(xpnet.ConfigError, match="dict or a list"):
        clip_grads(be.asarray(a), 1.0)


def _sequence_model(be):
    rng = np.random.default_rng(8)
    return xpnet.Sequential([
        TimeEmbedding.create(V, D, rng=rng, backend=be), TimeRNN.create(D, H, rng=rng, backend=be),
        TimeGRU.create(H, H, stateful=True, rng=rng, backend=be), TimeBiLSTM.create(H, H, rng=rng, backend=be),
        TimeLSTM.create(2 * H, H, stateful=True, rng=rng, backend=be), TimeDropout(0.25, rng=3),
        TimeAffine.create(H, V, rng=rng, backend=be),
    ])


def _run(model, x):
    for layer in model.layers:
        x = layer.forward(x, train=False)
    return x


def test_checkpoint_saves_and_loads_sequence_layers(be, tmp_path):
    from xpnet import checkpoint

    model = _sequence_model(be)
    x = _idx(be, [[1, 4, 0], [2, 2, 3]])
    path = checkpoint.save(tmp_path / "lm.npz", model)
    loaded, _, _ = checkpoint.load(path, backend=be)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert list(loaded.params) == list(model.params) and "Wx_f1" in loaded.params
    assert [getattr(layer, "stateful", None) for layer in loaded.layers] == \
        [getattr(layer, "stateful", None) for layer in model.layers]
    assert loaded.layers[5].ratio == 0.25
    for key, p in model.params.items():
        assert_close(loaded.params[key], B.to_numpy(p), be, rtol=0, atol=0)
    assert_close(_run(loaded, x), B.to_numpy(_run(model, x)), be)


def test_export_refuses_sequence_layers_by_name():
    pytest.importorskip("onnx")
    from xpnet.export import ExportError, to_onnx

    with pytest.raises(ExportError, match=r"layer 0 \(TimeEmbedding\) has no ONNX form"):
        to_onnx(_sequence_model(B.resolve("numpy")))


def test_a_language_model_learns_with_clipping_and_an_optimizer(be):
    rng = np.random.default_rng(2)
    layers = [TimeEmbedding.create(V, D, std=0.5, rng=rng, backend=be),
              TimeLSTM.create(D, H, stateful=True, rng=rng, backend=be), TimeAffine.create(H, V, rng=rng, backend=be)]
    model, loss_layer = xpnet.Sequential(layers), TimeSoftmaxWithLoss()
    optimizer = xpnet.SGD(lr=3.0)
    xs, ts = _idx(be, [[0, 1, 2], [3, 4, 0]]), _idx(be, [[1, 2, 3], [4, 0, 1]])
    losses = []
    for _ in range(6):
        layers[1].reset_state()
        losses.append(float(B.to_numpy(loss_layer.forward(_run_train(layers, xs), ts))))
        d = loss_layer.backward()
        for layer in reversed(layers):
            d = layer.backward(d)
        optimizer.update(model.params, clip_grads(model.grads, 5.0))
    assert model.params["Wx1"] is layers[1].params["Wx"]  # the layers read the updated arrays
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.9 * losses[0], losses


def _run_train(layers, x):
    for layer in layers:
        x = layer.forward(x, train=True)
    return x


def test_the_docs_example_runs_as_written():
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "sequence.md"
    scope: dict = {}
    exec(re.search(r"```python\n(.*?)```", page.read_text(), re.S).group(1), scope)  # noqa: S102
    assert np.isfinite(float(B.to_numpy(scope["loss"])))
    assert scope["model"].params["Wx1"] is scope["layers"][1].params["Wx"]
