"""Plain functions follow their input: same namespace, device and dtype out; textbook values."""

import math

import numpy as np
import pytest
import reference as ref
from conftest import assert_close

import xpnet
from xpnet import functional as F


def test_softmax_golden_3_1_minus3(be):
    y = xpnet.softmax(be.asarray([3.0, 1.0, -3.0]))
    assert_close(y, [0.88, 0.12, 0.00], be, rtol=0, atol=0.005)


def test_softmax_golden_3_0_minus3(be):
    y = xpnet.softmax(be.asarray([3.0, 0.0, -3.0]))
    assert_close(y, [0.95033021, 0.04731416, 0.00235563], be, rtol=1e-6, atol=1e-7)


def test_softmax_rows_sum_to_one_and_match_reference(be, rng):
    x = rng.standard_normal((5, 7)) * 10
    y = xpnet.softmax(be.asarray(x))
    assert_close(y, ref.softmax(x), be)
    assert_close(be.xp.sum(y, axis=-1), np.ones(5), be)


def test_softmax_of_huge_logits_is_finite(be):
    y = xpnet.softmax(be.asarray([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]]))
    assert_close(y, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], be)


def test_log_softmax_and_logsumexp_match_reference(be, rng):
    x = rng.standard_normal((4, 6)) * 30
    lse = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    assert_close(xpnet.logsumexp(be.asarray(x)), lse, be)
    assert_close(xpnet.logsumexp(be.asarray(x), keepdims=True), lse[:, None], be)
    assert_close(xpnet.log_softmax(be.asarray(x)), x - lse[:, None], be)


def test_sigmoid_matches_reference_and_is_stable(be):
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
    assert_close(xpnet.sigmoid(be.asarray(x)), ref.sigmoid(x), be)


def test_relu(be, rng):
    x = rng.standard_normal((3, 4))
    assert_close(xpnet.relu(be.asarray(x)), np.maximum(x, 0), be)


def test_one_hot(be):
    t = be.asarray(np.array([2, 0, 1]))
    oh = xpnet.one_hot(t, 4, dtype=be.dtype)
    assert_close(oh, ref.one_hot(np.array([2, 0, 1]), 4), be)


def test_cross_entropy_integer_and_one_hot_targets_agree(be, rng):
    s = rng.standard_normal((6, 4)) * 3
    t = np.array([0, 1, 2, 3, 3, 1])
    expected = ref.cross_entropy(s, t)
    assert_close(xpnet.cross_entropy(be.asarray(s), be.asarray(t)), expected, be)
    assert_close(xpnet.cross_entropy(be.asarray(s), be.asarray(ref.one_hot(t, 4))), expected, be)


def test_cross_entropy_single_sample_as_in_the_textbook(be):
    """Output (0.1, 0.05, 0.6, 0, ...) with label 2 gives -ln 0.6 = 0.5108 (the book's 0.51)."""
    s = np.log(np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]) + 1e-12)
    t = np.zeros(10)
    t[2] = 1
    loss = xpnet.cross_entropy(be.asarray(s), be.asarray(t))
    assert_close(loss, -math.log(0.6), be, rtol=1e-6)


def test_cross_entropy_of_huge_logits_is_finite(be):
    s = be.asarray([[1000.0, -1000.0], [-1000.0, 1000.0]])
    loss = xpnet.cross_entropy(s, be.asarray(np.array([1, 1])))
    assert_close(loss, 1000.0, be)


def test_cross_entropy_rejects_out_of_range_labels(be):
    with pytest.raises(xpnet.LabelError, match=r"\[0, 2\].*from 0 to 3"):
        xpnet.cross_entropy(be.asarray(np.zeros((2, 3))), be.asarray(np.array([0, 3])))


def test_accuracy(be):
    s = be.asarray([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert_close(xpnet.accuracy(s, be.asarray(np.array([1, 0, 0, 0]))), 0.75, be)
    assert_close(xpnet.accuracy(s, be.asarray(ref.one_hot(np.array([1, 1, 1, 1]), 2))), 0.5, be)


def test_functions_do_not_need_a_backend_switch(be, rng):
    """A torch tensor in gives a torch tensor out, whatever XPNET_BACKEND says."""
    x = be.asarray(rng.standard_normal((2, 3)))
    with xpnet.use_backend("numpy"):
        for f in (F.softmax, F.log_softmax, F.sigmoid, F.relu):
            y = f(x)
            assert xpnet.backend_name(y) == be.name and y.dtype == be.dtype


# ---------------------------------------------------------------------- the overflow guard
def _spy_scalar_uploads(monkeypatch, torch) -> list:
    """Count the tensors torch makes from Python numbers (``torch.asarray(0.5, device=...)``):
    on a CUDA device each is a host-to-device copy. array-api-compat's torch wrapper makes one
    for a Python scalar operand of ``maximum`` / ``minimum`` (``asarray``), of ``clip``
    (``as_tensor``)."""
    calls = []
    for name in ("asarray", "as_tensor", "tensor"):
        real = getattr(torch, name)

        def spy(*a, _real=real, _name=name, **k):
            data = a[0] if a else k.get("obj", k.get("data"))
            if isinstance(data, (int, float)):
                calls.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(torch, name, spy)
    return calls


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("loss, outputs", [("softmax", 3), ("sigmoid", 1)])
def test_training_steps_upload_no_scalar_for_the_overflow_guard(monkeypatch, loss, outputs, optimizer):
    """The guard's bound ``h - finfo.max`` (and the sigmoid loss's clamp) was a Python float:
    one upload per step (5 in 5 steps). A kept 0-d tensor per batch size: none after the first."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    be = xpnet.get_backend("torch", dtype="float32")
    model = xpnet.mlp([6, 8, outputs], loss=loss, batchnorm=True, dropout=0.1, backend=be)
    opt = getattr(xpnet, optimizer)(lr=0.01)
    rng = np.random.default_rng(0)
    batches = [(be.asarray(rng.standard_normal((n, 6))), be.asarray(rng.integers(0, 2, n))) for n in (10, 4)]

    def step(x, t):
        opt.update(model.params, model.gradient(x, t, check=False))
        for f in (F.softmax, F.log_softmax, F.logsumexp, F.relu, F.softplus):
            f(x)
        return model.accuracy(x, t, check=False)

    for x, t in batches:  # a full and a last, smaller batch: their bounds are made once
        step(x, t)
    calls = _spy_scalar_uploads(monkeypatch, torch)
    be.xp.maximum(batches[0][0], 0.5)
    assert calls == ["asarray"]  # the spy sees what the guard used to do
    calls.clear()
    for i in range(6):
        step(*batches[i % 2])
    assert calls == []


def test_the_overflow_guard_is_bit_identical_to_its_python_float_form(be, rng):
    M = float(np.finfo(be.dtype_name).max)
    s = np.concatenate([rng.standard_normal((6, 5)) * 30,
                        [[M, -M, 0.0, 1.0, -1.0], [-M, -M, -0.9 * M, -M, -M], [0.5 * M, -M, 0.4 * M, M, 0.0],
                         [-M, -0.99 * M, -M, -M, -0.98 * M]]])
    x, xp = be.asarray(s), be.xp
    for h in (None, 0.5 * M / s.shape[0], 1.0):
        xs, m = F._raised(x, -1, xp, h)
        hh = 0.5 * M if h is None else h
        lo = xp.maximum(m, hh - M) - hh  # the form it replaces: a Python float operand
        np.testing.assert_array_equal(xpnet.to_numpy(xs), xpnet.to_numpy(xp.maximum(x, lo)))
    np.testing.assert_array_equal(xpnet.to_numpy(F.relu(x)), xpnet.to_numpy(xp.maximum(x, 0.0)))


def _cross_entropy_f64(s: np.ndarray, t: np.ndarray) -> float:
    """Mean cross-entropy in Python floats (float64): ``x - m`` may become -inf, never NaN."""
    losses = []
    for row, label in zip(s.astype(np.float64).tolist(), t.tolist(), strict=True):
        m = max(row)
        lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
        losses.append(lse - row[label])
    return math.fsum(losses) / len(losses)


def test_cross_entropy_of_scores_at_the_dtype_limit_equals_a_float64_reference(be):
    """``x - max`` overflows here without the guard (``-M - M``), and ``-inf * 0`` is NaN. Each
    sample's loss stays below ``finfo.max / 2N``, the guard's cap."""
    M = float(np.finfo(be.dtype_name).max)
    s = np.array([[M, -M, 0.97 * M], [-M, -0.99 * M, -M], [0.5 * M, -M, 0.0], [1.0, -M, 2.0]],
                 dtype=be.dtype_name)
    t = np.array([2, 1, 0, 0])
    expected = _cross_entropy_f64(s, t)
    assert 0.005 * M < expected < 0.01 * M  # huge, yet finite in the dtype
    assert_close(xpnet.cross_entropy(be.asarray(s), be.asarray(t)), expected, be, rtol=1e-6, atol=0)
    assert_close(xpnet.SoftmaxWithLoss().forward(be.asarray(s), be.asarray(t)), expected, be, rtol=1e-6, atol=0)


def test_kept_guard_constants_never_hold_inference_or_traced_arrays():
    """A bound first made under ``torch.inference_mode`` still serves autograd later, and one
    made inside ``jax.jit`` is not kept (it would be a leaked tracer)."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    xpnet.backend._constants.clear()
    x = torch.tensor([[1.0, 2.0, -3.0]], dtype=torch.float64)
    with torch.inference_mode():
        first = F.softmax(x)
    assert xpnet.backend._constants and not any(c.is_inference() for c in xpnet.backend._constants.values())
    leaf = x.clone().requires_grad_(True)
    F.softmax(leaf)[0, 0].backward()
    assert torch.isfinite(leaf.grad).all()
    np.testing.assert_allclose(first.numpy(), ref.softmax(x.numpy()), rtol=1e-12)
    jax = pytest.importorskip("jax", reason="jax is not installed")
    xj = xpnet.get_backend("jax", dtype="float32").asarray(np.array([[1.0, 2.0, -3.0]]))
    traced = jax.jit(F.softmax)(xj)
    np.testing.assert_allclose(np.asarray(traced), np.asarray(F.softmax(xj)), rtol=1e-6)
