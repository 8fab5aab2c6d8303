"""Encoder-decoder models (xpnet.seq2seq): the loss against a float64 NumPy reference of the
book's three models, gradients against central differences, the same training on every backend,
greedy generation, exact-answer accuracy, and the errors for bad input."""

import functools

import numpy as np
import pytest
import reference as ref
from conftest import tol

import xpnet
from xpnet import backend as B
from xpnet.errors import BackendMismatchError, ConfigError, DTypeError, IndexRangeError, ShapeError
from xpnet.optimizers import clip_grads
from xpnet.seq2seq import MODELS, AttentionSeq2seq, PeekySeq2seq, Seq2seq

N, TQ, TA, V, D, H = 2, 2, 3, 6, 3, 4  # tiny, one shape throughout (jax compiles per shape)
KINDS = sorted(MODELS)


@functools.cache
def _data():
    rng = np.random.default_rng(7)
    return rng.integers(0, V, (N, TQ)), rng.integers(0, V, (N, TA))


def _host_params(model) -> dict:
    return {k: B.to_numpy(v).astype(np.float64) for k, v in model.params.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_loss_equals_the_reference_and_gradient_equals_central_differences(be, kind):
    """The loss in the row's dtype equals a float64 NumPy reference of the book's model; the
    gradient equals central differences along a random direction (on float64 rows, and in
    float32 on a device without float64)."""
    x, t = _data()
    model = MODELS[kind].create(V, D, H, rng=4, backend=be)
    p0 = _host_params(model)
    loss = model.loss(be.asarray(x), be.asarray(t))
    assert B.namespace(loss) is be.xp and loss.dtype == be.dtype and loss.ndim == 0
    np.testing.assert_allclose(float(B.to_numpy(loss)), ref.seq2seq_loss(p0, x, t, kind), **tol(be))
    if be.dtype_name != "float64" and be.supports_float64:
        return  # the gradient is checked in float64, on the float64 row of this backend
    bound, eps = (1e-6, 1e-6) if be.dtype_name == "float64" else (5e-2, 1e-2)
    model.backward()
    grads = {k: B.to_numpy(g).astype(np.float64) for k, g in model.grads.items()}
    assert list(grads) == list(p0) == ["W1", "Wx1", "Wh1", "b1", "W2", "Wx2", "Wh2", "b2", "W3", "b3"]
    assert all(np.any(g != 0) for g in grads.values())  # every parameter takes part
    rng = np.random.default_rng(11)
    v = {k: rng.standard_normal(a.shape) for k, a in p0.items()}
    xs, ts = be.asarray(x), be.asarray(t)
    vals = []
    for sign in (1, -1):
        for k in p0:
            model.params[k] = be.asarray(p0[k] + sign * eps * v[k])
        vals.append(float(B.to_numpy(model.loss(xs, ts, check=False))))
    num = (vals[0] - vals[1]) / (2 * eps)
    ana = sum(float(np.sum(grads[k] * v[k])) for k in p0)
    assert abs(num - ana) / max(abs(num) + abs(ana), 1e-5) < bound, (num, ana)


def _train(be, kind: str, opt: str, steps: int = 2) -> list[float]:
    x, t = _data()
    model = MODELS[kind].create(V, D, H, rng=5, backend=be)
    optimizer = xpnet.SGD(lr=0.5) if opt == "sgd" else xpnet.Adam(lr=0.05)
    xs, ts = be.asarray(x), be.asarray(t)
    losses = []
    for _ in range(steps):
        losses.append(float(B.to_numpy(model.loss(xs, ts))))
        model.backward()
        optimizer.update(model.params, clip_grads(model.grads, 1.0))
    return losses + [float(B.to_numpy(model.loss(xs, ts)))]


@functools.cache
def _reference_run(kind: str, opt: str) -> tuple:
    return tuple(_train(B.resolve("numpy", None, "float64"), kind, opt))


@pytest.mark.parametrize("other", ["jax", "torch"])
@pytest.mark.parametrize("kind, opt", [("peeky-seq2seq", "sgd"), ("attention-seq2seq", "adam")])
def test_training_steps_give_the_numpy_losses_in_float64(other, kind, opt):
    """Clipped SGD / Adam steps on jax and torch: NumPy's float64 losses to 1e-10, and they fall."""
    if not B.installed(other):
        pytest.skip(f"{other} is not installed ({B.INSTALL_HINT[other]})")
    expected = _reference_run(kind, opt)
    assert expected[-1] < expected[0]
    np.testing.assert_allclose(_train(B.resolve(other, None, "float64"), kind, opt), expected, rtol=1e-10)


def test_generate_gives_ids_of_the_vocabulary_in_the_asked_shape(be):
    x, _ = _data()
    for cls in (Seq2seq, PeekySeq2seq, AttentionSeq2seq):
        model = cls.create(V, D, H, rng=6, backend=be)
        out = model.generate(be.asarray(x), 1, 3)
        assert B.namespace(out) is be.xp and B.device(out) == be.device
        assert tuple(out.shape) == (N, 3) and be.xp.isdtype(out.dtype, "integral")
        host = B.to_numpy(out)
        assert host.min() >= 0 and host.max() < V


def test_generate_is_greedy_decoding_of_the_teacher_forced_scores():
    """Feeding the generated ids back as decoder input reproduces them as each step's argmax."""
    be = B.resolve("numpy", None, "float64")
    x, _ = _data()
    for cls in (Seq2seq, PeekySeq2seq, AttentionSeq2seq):
        model = cls.create(V, D, H, rng=8, backend=be)
        out = B.to_numpy(model.generate(be.asarray(x), 2, 4))
        t = np.concatenate([np.full((N, 1), 2), out], axis=1)
        scores = model.decode(model.encode(be.asarray(x)), be.asarray(t[:, :-1]))
        np.testing.assert_array_equal(np.argmax(B.to_numpy(scores), axis=2), out)
        for start in (be.asarray(np.full(N, 2)), np.int64(2)):  # one start id per question; a NumPy int
            np.testing.assert_array_equal(B.to_numpy(model.generate(be.asarray(x), start, 4)), out)


def test_accuracy_counts_only_whole_answers_generated_exactly():
    be = B.resolve("numpy", None, "float32")
    rng = np.random.default_rng(9)
    x = rng.integers(0, V, (4, TQ))
    model = PeekySeq2seq.create(V, D, H, rng=10, backend=be)
    answer = B.to_numpy(model.generate(be.asarray(x), 0, 3))
    t = np.concatenate([np.zeros((4, 1), dtype=np.int64), answer], axis=1)
    assert model.accuracy(be.asarray(x), be.asarray(t)) == 1.0
    t[1, 3] = (t[1, 3] + 1) % V  # one wrong character makes that answer wrong
    t[2, 1] = (t[2, 1] + 1) % V
    assert model.accuracy(be.asarray(x), be.asarray(t)) == 0.5
    assert model.accuracy(be.asarray(x), be.asarray(t), batch_size=3) == 0.5


def test_bad_input_gets_clear_errors():
    be = B.resolve("numpy", None, "float32")
    model = Seq2seq.create(V, D, H, rng=0, backend=be)
    x, t = (be.asarray(a) for a in _data())
    with pytest.raises(DTypeError, match="questions x.*integers"):
        model.loss(be.asarray(np.ones((N, TQ), np.float32)), t)
    with pytest.raises(DTypeError, match="questions x must be an integer array"):
        model.loss([[1, 2, 3], [1, 2, 3]], t)
    with pytest.raises(IndexRangeError, match=r"answers t.*\[0, 5\].*got values from 0 to 6"):
        model.loss(x, be.asarray(np.array([[0, 1, 6], [0, 2, 3]])))
    with pytest.raises(IndexRangeError, match="questions x"):
        model.gradient(be.asarray(np.array([[0, -1, 2], [0, 2, 3]])), t)
    with pytest.raises(ShapeError, match="2 questions x but 3 answers t"):
        model.loss(x, be.asarray(np.zeros((3, TA), np.int64)))
    with pytest.raises(ShapeError, match="T >= 2"):
        model.loss(x, t[:, :1])
    with pytest.raises(ShapeError, match=r"shape \(N, T\)"):
        model.generate(be.asarray(np.zeros((TQ,), np.int64)), 0, 3)
    for start in (V, -1, 1.0, True, "_"):
        with pytest.raises(ConfigError, match="start_id"):
            model.generate(x, start, 3)
    with pytest.raises(IndexRangeError, match="start_id"):
        model.generate(x, be.asarray(np.array([0, V])), 3)
    with pytest.raises(ShapeError, match="one id per question"):
        model.generate(x, be.asarray(np.zeros((3,), np.int64)), 3)
    with pytest.raises(ConfigError, match="length"):
        model.generate(x, 0, 0)
    torch = pytest.importorskip("torch")
    with pytest.raises(BackendMismatchError):
        model.loss(torch.zeros((N, TQ), dtype=torch.int64), t)


def test_models_refuse_sizes_and_layers_that_do_not_fit():
    with pytest.raises(ConfigError, match="hidden_size"):
        Seq2seq.create(V, D, 0)
    with pytest.raises(ConfigError, match="vocab_size"):
        PeekySeq2seq.create(-1, D, H)
    seq = Seq2seq.create(V, D, H, rng=0, backend="numpy")
    with pytest.raises(ShapeError, match="affine input is 4, expected 8"):
        PeekySeq2seq(*seq.layers[:3], PeekySeq2seq.create(V, D, H).dec_lstm, seq.dec_affine)
    with pytest.raises(ConfigError, match="dec_affine must be an xpnet TimeAffine"):
        Seq2seq(*seq.layers[:4], seq.dec_lstm)
    with pytest.raises(ConfigError, match="same"):
        Seq2seq(seq.enc_embed, seq.enc_lstm, seq.enc_embed, seq.dec_lstm, seq.dec_affine)
