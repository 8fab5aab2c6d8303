"""The second book's ``common`` package (``xpnet.dlfs2``) on every backend: list-form layers equal
to the book's formulas, optimizers that update every holder of a parameter (jax and dask
included), the book's trainers and their printed lines, the same spiral losses on every backend,
``util``, ``BaseModel``'s files, and the book-style scripts run as programs."""

import math
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import reference as R
from conftest import ROWS
from procs import run

from xpnet import backend as B
from xpnet.errors import CheckpointError, ConfigError, LabelError, ShapeError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "books"


@pytest.fixture
def book(be):
    """The books' ``np`` and the facade's modules, with ``be`` chosen for the test."""
    with B.use_backend(be.name, B.device_label(be.device), be.dtype_name):
        from xpnet.dlfs2 import layers, optimizer, trainer, util
        from xpnet.dlfs2.np import np

        yield type("Book", (), {"np": np, "layers": layers, "optimizer": optimizer, "trainer": trainer,
                                "util": util, "be": be})


FLOAT32_ROWS = [r for r in ROWS if r.dtype == "float32" and r.device is None]


@pytest.fixture(params=FLOAT32_ROWS, ids=[r.id for r in FLOAT32_ROWS])
def book32(request):
    """The facade on each backend in float32 (its default), for tests that wire many layers: their
    maths is checked on every row in tests/test_sequence.py."""
    row = request.param
    if not B.installed(row.backend):
        pytest.skip(f"{row.backend} is not installed")
    try:
        be = B.resolve(row.backend, row.device, row.dtype)
    except B.BackendUnavailableError as e:
        pytest.skip(f"{row.backend} cannot run here: {e}")
    with B.use_backend(be.name, None, be.dtype_name):
        from xpnet.dlfs2.np import np

        yield type("Book", (), {"np": np, "be": be})


def host(a):
    """Any array the facade gives (a box, a backend's array, host data) as float64 host data."""
    from xpnet.dlfs2.arrays import to_host

    return np.array(to_host(a), dtype=np.float64)  # a copy: never the live parameter itself


def rand(rng, *shape):
    return rng.standard_normal(shape)


def tolerance(be):
    return {"rtol": 2e-4, "atol": 2e-5} if be.dtype_name == "float32" else {"rtol": 1e-9, "atol": 1e-11}


# ------------------------------------------------------------------ layers in list form
def test_affine_and_matmul_keep_the_book_lists_and_fill_grads_in_place(book, rng):
    np_, L = book.np, book.layers
    W, b, x, dout = rand(rng, 4, 3), rand(rng, 3), rand(rng, 6, 4), rand(rng, 6, 3)  # one set of shapes
    # for the whole file: jax compiles each operation once per shape
    aff = L.Affine(np_.array(W), np_.array(b))
    grads = list(aff.grads)  # what a model collected with self.grads += layer.grads
    y = aff.forward(x)
    dx = aff.backward(np_.array(dout))
    t = tolerance(book.be)
    np.testing.assert_allclose(host(y), R.affine_forward(x, W, b), **t)
    ref_dx, ref_dW, ref_db = R.affine_backward(x, W, dout)
    np.testing.assert_allclose(host(dx), ref_dx, **t)
    assert grads[0] is aff.grads[0] and grads[1] is aff.grads[1]
    np.testing.assert_allclose(host(grads[0]), ref_dW, **t)
    np.testing.assert_allclose(host(grads[1]), ref_db, **t)
    np.testing.assert_allclose(host(aff.x), x, **t)
    mm = L.MatMul(np_.array(W))
    one_hot = np.eye(4, dtype=np.int32)[[0, 3, 1, 1, 2, 0]]  # chapter 3 feeds integer one-hot rows
    np.testing.assert_allclose(host(mm.forward(one_hot)), W[[0, 3, 1, 1, 2, 0]], **t)
    mm.forward(np_.array(x))
    np.testing.assert_allclose(host(mm.backward(np_.array(dout))), dout @ W.T, **t)
    np.testing.assert_allclose(host(mm.grads[0]), x.T @ dout, **t)


def test_activations_and_losses_follow_the_book(book, rng):
    np_, L, t_ = book.np, book.layers, tolerance(book.be)
    x, dout = rand(rng, 6, 4), rand(rng, 6, 4)
    sig = L.Sigmoid()
    y = R.sigmoid(x)
    np.testing.assert_allclose(host(sig.forward(x)), y, **t_)
    np.testing.assert_allclose(host(sig.backward(np_.array(dout))), dout * (1 - y) * y, **t_)
    sm = L.Softmax()
    y = R.softmax(x)
    np.testing.assert_allclose(host(sm.forward(x)), y, **t_)
    ref = y * dout - y * (y * dout).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(host(sm.backward(np_.array(dout))), ref, **t_)
    labels = np.array([0, 3, 1, 2, 3, 0])
    for target in (labels, np.eye(4, dtype=np.int32)[labels]):  # labels, or the book's one-hot rows
        swl = L.SoftmaxWithLoss()
        loss = swl.forward(x, target)
        np.testing.assert_allclose(float(host(loss)), R.cross_entropy(x, labels), **t_)
        np.testing.assert_allclose(host(swl.backward()), (R.softmax(x) - np.eye(4)[labels]) / 6, **t_)
    s, tb = rand(rng, 6), (rng.random(6) > 0.5).astype(np.int64)
    bce = L.SigmoidWithLoss()
    p = R.sigmoid(s)
    ref = -np.mean(tb * np.log(p) + (1 - tb) * np.log(1 - p))
    np.testing.assert_allclose(float(host(bce.forward(s, tb))), ref, **t_)
    dx = bce.backward()
    assert tuple(dx.shape) == (6,)
    np.testing.assert_allclose(host(dx), (p - tb) / 6, **t_)
    with pytest.raises(LabelError):
        L.SoftmaxWithLoss().forward(x, np.array([0, 9, 1, 2, 3, 0]))


def test_embedding_lists_accumulate_repeated_words(book, rng):
    from xpnet.dlfs2.time_layers import TimeEmbedding

    np_, L, t_ = book.np, book.layers, tolerance(book.be)
    W = rand(rng, 4, 3)
    emb = L.Embedding(np_.array(W))
    held = emb.grads[0]
    idx, dout = np.array([0, 2, 0, 3, 0, 1]), rand(rng, 6, 3)
    np.testing.assert_allclose(host(emb.forward(idx)), W[idx], **t_)
    assert emb.backward(np_.array(dout)) is None and emb.grads[0] is held
    ref = np.zeros_like(W)
    np.add.at(ref, idx, dout)  # the book's np.add.at(dW, idx, dout)
    np.testing.assert_allclose(host(held), ref, **t_)
    te = TimeEmbedding(np_.array(W))
    xs = idx.reshape(2, 3)
    np.testing.assert_allclose(host(te.forward(xs)), W[xs], **t_)
    te.backward(np_.array(dout.reshape(2, 3, 3)))
    np.testing.assert_allclose(host(te.grads[0]), ref, **t_)
    with pytest.raises(IndexError, match="word indices"):
        emb.forward(np.array([0, 4]))


def test_readers_negative_sampling_file_runs_on_the_facade(book32, rng):
    """Chapter 4's negative_sampling_layer.py as a reader writes it (tests/book_negative_sampling.py:
    the facade's Embedding and SigmoidWithLoss, np.random.choice with p) equals the book's maths."""
    import book_negative_sampling as NS

    np_, t_ = book32.np, tolerance(book32.be)
    corpus = np.array([0, 1, 2, 3, 4, 1, 5, 6, 1, 2, 7, 0, 3])
    W, h, target = rand(rng, 8, 3), rand(rng, 4, 3), np.array([1, 0, 7, 1])
    np_.random.seed(0)
    layer = NS.NegativeSamplingLoss(np_.array(W), corpus, power=0.75, sample_size=3)
    loss = layer.forward(np_.array(h), target)
    dh = layer.backward()
    negative = np.asarray(np_.asnumpy(layer.negative))
    assert negative.shape == (4, 3) and all(len(set(row)) == 3 and t not in row for row, t in zip(negative, target))
    ref_loss, ref_dh, ref_dW = R.negative_sampling(W, h, target, negative)
    np.testing.assert_allclose(float(host(loss)), ref_loss, **t_)
    np.testing.assert_allclose(host(dh), ref_dh, **t_)
    np.testing.assert_allclose(sum(host(g) for g in layer.grads), ref_dW, **t_)
    assert all(p is layer.params[0] for p in layer.params)  # one table, as the book's model shares it


def test_time_layers_not_in_xpnet_say_so():
    from xpnet.dlfs2 import time_layers

    assert "TimeEmbedding" in time_layers.__all__ and "LSTM" in time_layers.PENDING
    with pytest.raises(ConfigError, match="LSTM is not in this version"):
        time_layers.LSTM(None, None, None)
    with pytest.raises(AttributeError, match="TimeEmbedding"):
        time_layers.TimeLTSM  # noqa: B018 (a misspelt name)


def test_time_rnn_lists_carry_state_and_fill_grads_in_place(book, rng):
    from xpnet import recurrent
    from xpnet.dlfs2.time_layers import TimeRNN

    np_, t_ = book.np, tolerance(book.be)
    Wx, Wh, b, xs, dhs = rand(rng, 4, 3), rand(rng, 3, 3), rand(rng, 3), rand(rng, 2, 3, 4), rand(rng, 2, 3, 3)
    layer = TimeRNN(np_.array(Wx), np_.array(Wh), np_.array(b), stateful=True)
    held = list(layer.grads)
    hs = layer.forward(xs)
    dxs = layer.backward(np_.array(dhs))
    be = book.be
    ref = recurrent.TimeRNN(be.asarray(Wx), be.asarray(Wh), be.asarray(b))
    np.testing.assert_allclose(host(hs), host(ref.forward(be.asarray(xs))), **t_)
    np.testing.assert_allclose(host(dxs), host(ref.backward(be.asarray(dhs))), **t_)
    for g, name in zip(held, ("Wx", "Wh", "b")):
        np.testing.assert_allclose(host(g), host(ref.grads[name]), **t_)
    assert all(a is b for a, b in zip(held, layer.grads))
    np.testing.assert_allclose(host(layer.h), host(hs)[:, -1], **t_)
    second = host(layer.forward(xs))  # stateful: starts from the last h, not from zeros
    assert not np.allclose(second, host(hs))
    layer.reset_state()
    np.testing.assert_allclose(host(layer.forward(xs)), host(hs), **t_)


def _grads_filled(layer, held, want, t_):
    assert all(a is b for a, b in zip(held, layer.grads))  # the book's grads[i][...] = dW
    for g, w in zip(held, want):
        np.testing.assert_allclose(host(g), w, **t_)


def test_time_layers_follow_the_book_on_every_backend(book32, rng):
    """TimeAffine, TimeSoftmaxWithLoss, TimeLSTM, TimeGRU, TimeBiLSTM, TimeDropout and TimeAttention
    in the book's list form equal the book's loops (tests/reference.py)."""
    from xpnet.dlfs2 import time_layers as TL

    np_, t_ = book32.np, tolerance(book32.be)
    N, T, D, H = 2, 3, 4, 3
    xs, W, b, dout = rand(rng, N, T, D), rand(rng, D, H), rand(rng, H), rand(rng, N, T, H)
    affine = TL.TimeAffine(np_.array(W), np_.array(b))
    held = list(affine.grads)
    np.testing.assert_allclose(host(affine.forward(xs)), xs @ W + b, **t_)
    np.testing.assert_allclose(host(affine.backward(np_.array(dout))), dout @ W.T, **t_)
    _grads_filled(affine, held, [xs.reshape(-1, D).T @ dout.reshape(-1, H), dout.sum(axis=(0, 1))], t_)

    ts = np.array([[0, 2, -1], [1, -1, 2]])
    loss_layer = TL.TimeSoftmaxWithLoss()
    ref_loss, ref_dx = R.time_softmax_with_loss(dout, ts)
    np.testing.assert_allclose(float(host(loss_layer.forward(np_.array(dout), ts))), ref_loss, **t_)
    np.testing.assert_allclose(host(loss_layer.backward()), ref_dx, **t_)

    for gates, cls, ref in ((4, TL.TimeLSTM, R.time_lstm), (3, TL.TimeGRU, R.time_gru)):
        Wx, Wh, bb = rand(rng, D, gates * H), rand(rng, H, gates * H), rand(rng, gates * H)
        layer = cls(np_.array(Wx), np_.array(Wh), np_.array(bb))
        held = list(layer.grads)
        want = ref(xs, Wx, Wh, bb, dout)
        np.testing.assert_allclose(host(layer.forward(xs)), want[0], **t_)
        np.testing.assert_allclose(host(layer.backward(np_.array(dout))), want[-5], **t_)
        _grads_filled(layer, held, want[-4:-1], t_)
        np.testing.assert_allclose(host(layer.dh), want[-1], **t_)
        if gates == 4:
            np.testing.assert_allclose(host(layer.c), want[1], **t_)

    cells = [rand(rng, *shape) for shape in ((D, 4 * H), (H, 4 * H), (4 * H,))] * 2
    cells[3:] = [c + 0.5 for c in cells[3:]]
    bi = TL.TimeBiLSTM(*(np_.array(c) for c in cells))
    held = list(bi.grads)
    dbi = rand(rng, N, T, 2 * H)
    fwd = R.time_lstm(xs, *cells[:3], dbi[:, :, :H])
    rev = R.time_lstm(xs[:, ::-1], *cells[3:], dbi[:, ::-1, H:])
    np.testing.assert_allclose(host(bi.forward(xs)), np.concatenate([fwd[0], rev[0][:, ::-1]], axis=2), **t_)
    np.testing.assert_allclose(host(bi.backward(np_.array(dbi))), fwd[2] + rev[2][:, ::-1], **t_)
    _grads_filled(bi, held, [*fwd[3:6], *rev[3:6]], t_)

    drop = TL.TimeDropout(dropout_ratio=0.4)
    np_.random.seed(3)
    kept = np.random.RandomState(3).rand(N, T, D) > 0.4  # the book's draw from np.random
    np.testing.assert_allclose(host(drop.forward(xs)), xs * kept / 0.6, **t_)
    drop.train_flg = False
    np.testing.assert_allclose(host(drop.forward(xs)), xs, **t_)

    hs_enc, hs_dec, dctx = rand(rng, N, 4, H), rand(rng, N, 2, H), rand(rng, N, 2, H)
    att = TL.TimeAttention()
    assert att.params == [] and att.grads == []
    steps = [R.attention(hs_enc, hs_dec[:, t], dctx[:, t]) for t in range(2)]
    np.testing.assert_allclose(host(att.forward(np_.array(hs_enc), np_.array(hs_dec))),
                               np.stack([s[0] for s in steps], axis=1), **t_)
    np.testing.assert_allclose(host(att.attention_weights[1]), steps[1][1], **t_)
    dhs_enc, dhs_dec = att.backward(np_.array(dctx))
    np.testing.assert_allclose(host(dhs_enc), steps[0][2] + steps[1][2], **t_)
    np.testing.assert_allclose(host(dhs_dec), np.stack([s[3] for s in steps], axis=1), **t_)


def test_dropout_mask_is_the_books_draw_from_np_random(book):
    np_, L = book.np, book.layers
    drop = L.Dropout(dropout_ratio=0.3)
    x = np.ones((4, 5))
    np_.random.seed(7)
    y = host(drop.forward(x))
    mask = np.random.RandomState(7).rand(4, 5) > 0.3  # the book's np.random.rand(*x.shape) > ratio
    np.testing.assert_array_equal(y, mask.astype(float))
    np.testing.assert_array_equal(host(drop.backward(np_.ones((4, 5)))), mask.astype(float))
    np.testing.assert_allclose(host(drop.forward(x, train_flg=False)), 0.7 * x, rtol=1e-6)
    assert drop.params == [] and drop.dropout_ratio == 0.3


def test_functions_match_the_book(book, rng):
    from xpnet.dlfs2 import functions as F

    t_ = tolerance(book.be)
    x = rand(rng, 6, 4)
    np.testing.assert_allclose(host(F.softmax(x)), R.softmax(x), **t_)
    np.testing.assert_allclose(host(F.sigmoid(x)), R.sigmoid(x), **t_)
    np.testing.assert_allclose(host(F.relu(x)), np.maximum(0, x), **t_)
    y, labels = R.softmax(x), np.array([3, 0, 2, 1, 1, 0])
    ref = -np.sum(np.log(y[np.arange(6), labels] + 1e-7)) / 6
    np.testing.assert_allclose(float(host(F.cross_entropy_error(y, labels))), ref, **t_)
    np.testing.assert_allclose(float(host(F.cross_entropy_error(y, np.eye(4)[labels]))), ref, **t_)
    np.testing.assert_allclose(float(host(F.cross_entropy_error(y[1], np.eye(4)[0]))),
                               -np.log(y[1, 0] + 1e-7), **t_)


# ------------------------------------------------------------------ optimizers on lists
def book_step(name, p, g, state, t):
    """One step of the book's optimizer formulas, float64, on host arrays."""
    lr = {"SGD": 0.1, "Momentum": 0.1, "Nesterov": 0.1, "AdaGrad": 0.1, "RMSprop": 0.01, "Adam": 0.01}[name]
    if name == "SGD":
        return p - lr * g
    if name in ("Momentum", "Nesterov"):
        v = state.get("v", 0) * 0.9 - lr * g
        state["v"] = v
        return p + v if name == "Momentum" else p + 0.81 * v - 1.9 * lr * g
    if name == "AdaGrad":
        state["h"] = state.get("h", 0) + g * g
        return p - lr * g / (np.sqrt(state["h"]) + 1e-7)
    if name == "RMSprop":
        state["h"] = state.get("h", 0) * 0.99 + 0.01 * g * g
        return p - lr * g / (np.sqrt(state["h"]) + 1e-7)
    state["m"] = state.get("m", 0) + 0.1 * (g - state.get("m", 0))
    state["v"] = state.get("v", 0) + 0.001 * (g * g - state.get("v", 0))
    lr_t = lr * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    return p - lr_t * state["m"] / (np.sqrt(state["v"]) + 1e-7)


@pytest.mark.parametrize("name", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
def test_optimizer_updates_the_array_every_holder_reads(book, rng, name):
    np_, L = book.np, book.layers
    W0, b0 = rand(rng, 4, 3), rand(rng, 3)
    layer = L.Affine(np_.array(W0), np_.array(b0))
    params, grads = [], []
    params += layer.params  # the book's model: its own lists, the layer's arrays
    grads += layer.grads
    kw = {"lr": {"RMSprop": 0.01, "Adam": 0.01}.get(name, 0.1)}
    opt = getattr(book.optimizer, name)(**kw)
    ref, state, x = [W0, b0], [{}, {}], rand(rng, 6, 4)
    for step in (1, 2):
        layer.forward(x)
        dout = rand(rng, 6, 3)
        layer.backward(np_.array(dout))
        gs = [x.T @ dout, dout.sum(axis=0)]
        ref = [book_step(name, p, g, s, step) for p, g, s in zip(ref, gs, state)]
        opt.update(params, grads)
    t_ = tolerance(book.be)
    assert layer.params[0] is params[0] and opt.iter == 2
    np.testing.assert_allclose(host(layer.params[0]), ref[0], **t_)
    np.testing.assert_allclose(host(layer.params[1]), ref[1], **t_)
    np.testing.assert_allclose(host(layer.forward(x)), x @ ref[0] + ref[1], **t_)  # the layer sees it


def test_optimizer_refuses_what_it_cannot_update_for_every_holder(book):
    be, opt = book.be, book.optimizer.SGD(lr=0.5)
    bare = be.asarray(np.ones((2, 2)))  # the backend's own array, not the books' np
    if B.is_writeable(bare):  # numpy, torch, array_api_strict: changed in place, seen by every holder
        opt.update([bare], [be.asarray(np.ones((2, 2)))])
        np.testing.assert_allclose(host(bare), 0.5 * np.ones((2, 2)))
    else:
        with pytest.raises(ConfigError, match="cannot change in place"):
            opt.update([bare], [be.asarray(np.ones((2, 2)))])
    np_ = book.np
    opt2 = book.optimizer.Adam()
    opt2.update([np_.ones((2, 2))], [np_.ones((2, 2))])
    with pytest.raises(ConfigError, match="one optimizer per model"):
        opt2.update([np_.ones((3, 2))], [np_.ones((3, 2))])
    with pytest.raises(ConfigError, match="one length"):
        opt2.update([np_.ones((2, 2))], [])
    with pytest.raises(ConfigError, match="learning rate"):
        opt2.lr = -1.0
    opt2.lr /= 4.0  # the book's ch6 script
    assert opt2.lr == pytest.approx(0.00025) and len(opt2.m) == 1


def test_clip_grads_scales_in_place_to_the_max_norm(book):
    np_ = book.np
    grads = [np_.ones((2, 2)) * 3.0, np_.ones(3) * 4.0]  # norm sqrt(36 + 48)
    held = list(grads)
    book.util.clip_grads(grads, 1.0)
    total = sum(float((host(g) ** 2).sum()) for g in held)
    assert total == pytest.approx(1.0, rel=1e-4)
    small = [np_.ones(2) * 0.1]
    book.util.clip_grads(small, 5.0)
    np.testing.assert_allclose(host(small[0]), [0.1, 0.1], rtol=1e-6)


def test_remove_duplicate_merges_shared_and_tied_weights(book):
    np_, tr = book.np, book.trainer
    W = np_.array(np.arange(6.0).reshape(2, 3))
    tied = np_.array(np.arange(6.0).reshape(2, 3).T)
    other = np_.ones(3)
    gW1, gW2, gT, go = np_.ones((2, 3)), np_.ones((2, 3)) * 2, np_.array(np.arange(6.0).reshape(3, 2)), np_.zeros(3)
    params, grads = tr.remove_duplicate([W, other, W, tied], [gW1, go, gW2, gT])
    assert len(params) == 2 and params[0] is W and params[1] is other
    np.testing.assert_allclose(host(grads[0]), 3 + np.arange(6.0).reshape(3, 2).T)


# ------------------------------------------------------------------ the trainers
def two_layer_net(L, np_, hidden=10):
    class TwoLayerNet:
        def __init__(self):
            self.layers = [L.Affine(0.01 * np_.random.randn(2, hidden), np_.zeros(hidden)), L.Sigmoid(),
                           L.Affine(0.01 * np_.random.randn(hidden, 3), np_.zeros(3))]
            self.loss_layer = L.SoftmaxWithLoss()
            self.params, self.grads = [], []
            for layer in self.layers:
                self.params += layer.params
                self.grads += layer.grads

        def forward(self, x, t):
            for layer in self.layers:
                x = layer.forward(x)
            return self.loss_layer.forward(x, t)

        def backward(self, dout=1):
            dout = self.loss_layer.backward(dout)
            for layer in reversed(self.layers):
                dout = layer.backward(dout)

    return TwoLayerNet()


def spiral_losses(epochs, lr=1.0):
    from xpnet.dlfs2 import layers as L
    from xpnet.dlfs2.dataset import spiral
    from xpnet.dlfs2.np import np as np_
    from xpnet.dlfs2.optimizer import SGD
    from xpnet.dlfs2.trainer import Trainer

    np_.random.seed(0)
    x, t = spiral.load_data()
    trainer = Trainer(two_layer_net(L, np_), SGD(lr=lr))
    trainer.fit(x, t, max_epoch=epochs, batch_size=30, eval_interval=1)
    return np.array(trainer.loss_list)


@pytest.fixture(scope="module")
def numpy_spiral():
    with B.use_backend("numpy", None, "float32"):
        return spiral_losses(1)


@pytest.mark.parametrize("row", [r for r in ROWS if r.dtype == "float32" and r.device is None], ids=lambda r: r.id)
def test_spiral_trainer_gives_the_same_losses_on_every_backend(row, numpy_spiral, capsys):
    if not B.installed(row.backend):
        pytest.skip(f"{row.backend} is not installed")
    with B.use_backend(row.backend, None, "float32"):
        losses = spiral_losses(1)
    assert losses.shape == (10,)
    np.testing.assert_allclose(losses, numpy_spiral, rtol=1e-4, atol=1e-5)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    assert all(re.fullmatch(r"\| epoch 1 \|  iter \d+ / 10 \| time \d+\[s\] \| loss \d+\.\d\d", x) for x in lines)
    assert lines[0].startswith("| epoch 1 |  iter 1 / 10 |") and lines[-1].startswith("| epoch 1 |  iter 10 / 10 |")


def test_spiral_loss_falls_with_the_books_settings(capsys):
    with B.use_backend("numpy", None, "float32"):
        losses = spiral_losses(60)
    capsys.readouterr()
    assert losses[:10].mean() > 1.05 and losses[-10:].mean() < 0.8


def test_trainer_plot_needs_matplotlib_and_says_so(tmp_path, monkeypatch, capsys):
    from xpnet.dlfs2.trainer import Trainer
    from xpnet.plots import PlotUnavailableError

    trainer = Trainer(model=None, optimizer=None)
    trainer.loss_list, trainer.eval_interval = [1.1, 0.9, 0.7], 10
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        trainer.plot(file_name=str(tmp_path / "loss.png"))
        assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # as if it were not installed
    with pytest.raises(PlotUnavailableError, match="pip install"):
        trainer.plot()


def test_trainer_refuses_a_batch_larger_than_the_data(book):
    model = two_layer_net(book.layers, book.np)
    tr = book.trainer.Trainer(model, book.optimizer.SGD())
    with pytest.raises(ConfigError, match="smaller than one batch"):
        tr.fit(np.zeros((10, 2)), np.zeros(10, dtype=int), batch_size=32)
    with pytest.raises(ConfigError, match="one target per sample"):
        tr.fit(np.zeros((10, 2)), np.zeros(9, dtype=int), batch_size=2)
    for bad in (dict(max_epoch=-1), dict(max_epoch=2.5), dict(batch_size=0), dict(batch_size=True)):
        with pytest.raises(ConfigError, match="max_epoch|batch_size"):
            tr.fit(np.zeros((10, 2)), np.zeros(10, dtype=int), **bad)
    with pytest.raises(ConfigError, match="must be an array"):
        tr.fit([[0.0, 1.0]], np.zeros(1, dtype=int))


def test_rnnlm_trainer_prints_perplexity_and_it_falls(capsys):
    """A bigram model (one-hot word -> Affine -> softmax) on the first 600 words of the offline corpus."""
    from xpnet.datasets.text import pydoc_corpus
    from xpnet.dlfs2 import layers as L
    from xpnet.dlfs2.np import np as np_
    from xpnet.dlfs2.optimizer import Adam
    from xpnet.dlfs2.trainer import RnnlmTrainer
    from xpnet.dlfs2.util import convert_one_hot, eval_perplexity

    corpus = pydoc_corpus(max_words=400).ids
    V = int(corpus.max()) + 1

    class Bigram:
        def __init__(self):
            self.affine = L.Affine(0.01 * np_.random.randn(V, V), np_.zeros(V))
            self.loss = L.SoftmaxWithLoss()
            self.params, self.grads = self.affine.params, self.affine.grads

        def forward(self, xs, ts):
            x = convert_one_hot(xs.reshape(-1), V).astype(np.float32)
            return self.loss.forward(self.affine.forward(x), ts.reshape(-1))

        def backward(self, dout=1):
            self.affine.backward(self.loss.backward(dout))

    with B.use_backend("numpy", None, "float32"):
        np_.random.seed(0)
        model = Bigram()
        trainer = RnnlmTrainer(model, Adam(lr=0.05))
        trainer.fit(corpus[:-1], corpus[1:], max_epoch=6, batch_size=4, time_size=10, eval_interval=3)
        ppl = eval_perplexity(model, corpus, batch_size=4, time_size=10)
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("| epoch")]
    assert lines and all(re.fullmatch(r"\| epoch \d+ \|  iter \d+ / 9 \| time \d+\[s\] \| perplexity \d+\.\d\d",
                                      x) for x in lines)
    assert trainer.ppl_list[0] > V * 0.8 and trainer.ppl_list[-1] < trainer.ppl_list[0] / 3
    assert "evaluating perplexity ..." in out and 1 < ppl < trainer.ppl_list[0]


def test_trainer_keeps_tied_weights_tied_on_every_backend(book, rng, capsys):
    """Weight tying as the book's better RNNLM does it: the output layer gets ``embed_W.T``. On numpy
    and torch that is a view of the same memory; on jax and dask the transposed copy follows each
    update of the one parameter the optimizer sees."""
    np_, L = book.np, book.layers

    class Tied:
        def __init__(self):
            np_.random.seed(3)
            W = 0.1 * np_.random.randn(4, 3)  # the backend's dtype, as np.zeros makes b
            self.embed, self.affine = L.Embedding(W), L.Affine(W.T, np_.zeros(4))
            self.loss = L.SoftmaxWithLoss()
            self.params = self.embed.params + self.affine.params
            self.grads = self.embed.grads + self.affine.grads

        def forward(self, x, t):
            return self.loss.forward(self.affine.forward(self.embed.forward(x)), t)

        def backward(self, dout=1):
            self.embed.backward(self.affine.backward(self.loss.backward(dout)))

    model = Tied()
    W0 = host(model.embed.params[0])
    x, t = np.array([0, 1, 2, 3, 1, 0]), np.array([1, 2, 3, 0, 2, 1])
    book.trainer.Trainer(model, book.optimizer.SGD(lr=0.5)).fit(x, t, max_epoch=2, batch_size=6, eval_interval=None)
    W = host(model.embed.params[0])
    assert not np.allclose(W, W0)
    np.testing.assert_allclose(host(model.affine.params[0]), W.T, **tolerance(book.be))


# ------------------------------------------------------------------ util and BaseModel
def co_matrix_loop(corpus, V, w):
    C = np.zeros((V, V), dtype=np.int32)
    for i, word in enumerate(corpus):
        for d in range(1, w + 1):
            if i - d >= 0:
                C[word, corpus[i - d]] += 1
            if i + d < len(corpus):
                C[word, corpus[i + d]] += 1
    return C


def test_count_based_util_matches_the_books_loops(capsys):
    from xpnet.dlfs2 import util as U

    corpus, w2i, i2w = U.preprocess("You say goodbye and I say hello.")
    assert list(w2i) == ["you", "say", "goodbye", "and", "i", "hello", "."]
    assert corpus.tolist() == [0, 1, 2, 3, 4, 1, 5, 6]
    for w in (1, 2):
        np.testing.assert_array_equal(U.create_co_matrix(corpus, 7, w), co_matrix_loop(corpus, 7, w))
    C = co_matrix_loop(corpus, 7, 1)
    N, S = C.sum(), C.sum(axis=0)
    ref = np.array([[max(0, np.log2(C[i, j] * N / (S[j] * S[i]) + 1e-8)) for j in range(7)] for i in range(7)])
    np.testing.assert_allclose(U.ppmi(C), ref, rtol=1e-6)
    ctx, tgt = U.create_contexts_target(corpus, window_size=1)
    assert ctx.tolist() == [[0, 2], [1, 3], [2, 4], [3, 1], [4, 5], [1, 6]] and tgt.tolist() == [1, 2, 3, 4, 1, 5]
    oh = U.convert_one_hot(ctx, 7)
    assert oh.shape == (6, 2, 7) and oh.dtype == np.int32 and oh[0, 1, 2] == 1 and oh.sum() == 12
    assert float(U.cos_similarity(C[0], C[4])) == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    U.most_similar("you", w2i, i2w, C, top=3)
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "[query] you" and {x.split(":")[0].strip() for x in out[2:5]} == {"goodbye", "i", "hello"}
    U.most_similar("zebra", w2i, i2w, C)
    assert capsys.readouterr().out.strip() == "zebra is not found"
    with pytest.raises(ConfigError, match="outside a vocabulary"):
        U.create_co_matrix(corpus, 3)
    with pytest.raises(ConfigError, match="outside a vocabulary"):
        U.convert_one_hot(corpus, 5)
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="window_size"):
            U.create_contexts_target(corpus, window_size=bad)
    with pytest.raises(ShapeError, match="no word with 4 neighbours"):
        U.create_contexts_target(corpus, window_size=4)
    for bad in (0, -1.0, float("nan"), "5"):
        with pytest.raises(ConfigError, match="max_norm"):
            U.clip_grads([np.ones(2)], bad)


class _TinyModel:
    def __init__(self, np_):
        from xpnet.dlfs2.base_model import BaseModel

        self.model = type("Tiny", (BaseModel,), {})()
        self.model.params = [np_.array(np.arange(6.0).reshape(2, 3) / 7), np_.ones(3)]
        self.model.grads = [np_.zeros((2, 3)), np_.zeros(3)]


def test_base_model_saves_float16_and_loads_into_the_same_arrays(book, tmp_path):
    np_ = book.np
    m = _TinyModel(np_).model
    path = tmp_path / "tiny.pkl"
    m.save_params(str(path))
    saved = pickle.loads(path.read_bytes())
    assert [a.dtype for a in saved] == [np.float16, np.float16] and isinstance(saved[0], np.ndarray)
    other = _TinyModel(np_).model
    held = other.params[0]
    other.params[0] *= 0.0
    other.load_params(str(path))
    assert other.params[0] is held
    np.testing.assert_allclose(host(held), np.arange(6.0).reshape(2, 3) / 7, rtol=1e-3)


def test_base_model_refuses_bad_files(tmp_path):
    from xpnet.dlfs2.np import np as np_

    m = _TinyModel(np_).model
    with pytest.raises(CheckpointError, match="No file"):
        m.load_params(str(tmp_path / "absent.pkl"))
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([os.system]))
    with pytest.raises(CheckpointError, match="NumPy arrays only"):
        m.load_params(str(tmp_path / "evil.pkl"))
    (tmp_path / "one.pkl").write_bytes(pickle.dumps([np.ones((2, 3), np.float16)]))
    with pytest.raises(CheckpointError, match="holds 1 parameters"):
        m.load_params(str(tmp_path / "one.pkl"))
    (tmp_path / "shape.pkl").write_bytes(pickle.dumps([np.ones((3, 2)), np.ones(3)]))
    with pytest.raises(ShapeError, match="parameter 0 has shape"):
        m.load_params(str(tmp_path / "shape.pkl"))
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps([np.ones(3)])[:10])
    with pytest.raises(CheckpointError, match="not a parameter file"):
        m.load_params(str(tmp_path / "cut.pkl"))


def test_config_gpu_says_whether_the_chosen_backend_is_on_a_gpu(be):
    from xpnet.dlfs2.config import on_gpu

    assert on_gpu(be) is (B.device_label(be.device).split(":")[0] in ("cuda", "gpu", "rocm"))


# ------------------------------------------------------------------ the book-style scripts
def run_script(name, backend, epochs="1"):
    env = {**os.environ, "XPNET_BACKEND": backend, "XPNET_EXAMPLE_EPOCHS": epochs, "OMP_NUM_THREADS": "1"}
    done = run([sys.executable, str(EXAMPLES / name)], timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_book_scripts_run_with_only_their_imports_rewritten(backend):
    if not B.installed(backend):
        pytest.skip(f"{backend} is not installed")
    out = run_script("train_spiral.py", backend)
    lines = [x for x in out.splitlines() if x.startswith("| epoch")]
    assert len(lines) == 1 and "training accuracy" in out
    final = float(out.split("final loss ")[1].split(",")[0])
    with B.use_backend("numpy", None, "float32"):
        assert final == pytest.approx(float(spiral_losses(1)[0]), abs=1e-4)  # the same network and data


def test_simple_rnnlm_script_prints_the_books_lines_and_learns():
    out = run_script("train_simple_rnnlm.py", "numpy", epochs="2")
    lines = [x for x in out.splitlines() if x.startswith("| epoch")]
    assert len(lines) == 2 and all(re.fullmatch(r"\| epoch [12] \|  iter 1 / 19 \| time \d+\[s\] \| "
                                                r"perplexity \d+\.\d\d", x) for x in lines)
    ppl = [float(x.rsplit(" ", 1)[1]) for x in lines]
    assert ppl[1] < ppl[0]


def simple_rnnlm_perplexities(capsys):
    """The script's SimpleRnnlm (weights made with ``(np.random.randn(V, D) / 100).astype('f')``)
    trained by RnnlmTrainer for one epoch of 3 iterations on the first 100 words of its corpus."""
    import importlib.util

    from xpnet.datasets.text import pydoc_corpus
    from xpnet.dlfs2.np import np as np_
    from xpnet.dlfs2.optimizer import SGD
    from xpnet.dlfs2.trainer import RnnlmTrainer

    spec = importlib.util.spec_from_file_location("book_simple_rnnlm", EXAMPLES / "train_simple_rnnlm.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    np_.random.seed(0)
    corpus = pydoc_corpus(max_words=100)[0]
    model = script.SimpleRnnlm(int(corpus.max()) + 1, 4, 4)
    trainer = RnnlmTrainer(model, SGD(0.1))
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=5, time_size=5, eval_interval=1)
    capsys.readouterr()
    return np.array(trainer.ppl_list)


def test_simple_rnnlm_gives_the_same_perplexities_on_every_backend(book32, capsys):
    """The book's NumPy idioms in the script (``.astype('f')``, ``np.sqrt(D)``, the trainer's
    ``-=`` on the weights) give numpy's perplexities on each backend, torch included."""
    got = simple_rnnlm_perplexities(capsys)
    with B.use_backend("numpy", None, "float32"):
        want = simple_rnnlm_perplexities(capsys)
    assert len(want) == 3 and np.all(np.isfinite(want))
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_count_based_script_finds_the_books_neighbours():
    out = run_script("count_based.py", "numpy")
    assert "[query] you" in out and "cos(you, i) = 0.7071" in out
