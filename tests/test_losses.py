"""Loss layers: textbook values, stability for any logits, backward = (y - t) / N."""

import math

import numpy as np
import pytest
import reference as ref
from conftest import assert_close

import xpnet


def _grad_dtype(be):
    return "float64" if be.supports_float64 else "float32"


@pytest.mark.parametrize(
    "y, label, expected",
    [((0.3, 0.2, 0.5), 1, (0.3, -0.8, 0.5)), ((0.01, 0.99, 0.0), 1, (0.01, -0.01, 0.0))],
)
def test_softmax_with_loss_backward_golden(be, y, label, expected):
    """One sample whose softmax output is ``y``: the gradient is y - t."""
    scores = np.log(np.maximum(np.array([y]), 1e-30))  # softmax(log y) = y
    layer = xpnet.SoftmaxWithLoss()
    layer.forward(be.asarray(scores), be.asarray(np.array([label])))
    assert_close(layer.backward(), np.array([expected]), be, atol=2e-6)


def test_softmax_with_loss_backward_is_y_minus_t_over_n(be, rng):
    s = rng.standard_normal((5, 4)) * 4
    t = np.array([0, 3, 1, 1, 2])
    layer = xpnet.SoftmaxWithLoss()
    loss = layer.forward(be.asarray(s), be.asarray(t))
    assert_close(loss, ref.cross_entropy(s, t), be)
    assert_close(layer.backward(), (ref.softmax(s) - ref.one_hot(t, 4)) / 5, be)


def test_cross_entropy_gradient_check_proves_y_minus_t(be, rng):
    """Central differences of the loss w.r.t. the logits equal (y - t) / N on every entry,
    and not y (A - 1) on the true class with zeros elsewhere (a common wrong derivation)."""
    s = rng.standard_normal((3, 4))
    t = np.array([2, 0, 3])
    model = xpnet.Sequential([], xpnet.SoftmaxWithLoss())
    dt = _grad_dtype(be)
    eps = 1e-5 if dt == "float64" else 1e-2
    num = xpnet.to_numpy(model.numerical_gradient(be.asarray(s), be.asarray(t), eps=eps, dtype=dt,
                                                  wrt_input=True)["x"])
    y, T = ref.softmax(s), ref.one_hot(t, 4)
    atol = 1e-8 if dt == "float64" else 2e-3
    np.testing.assert_allclose(num, (y - T) / 3, atol=atol)
    wrong = np.where(T == 1, y * (y - 1), 0.0) / 3
    assert np.abs(num - wrong).max() > 0.05


def test_softmax_with_loss_one_hot_targets_equal_integer_labels(be, rng):
    s = rng.standard_normal((4, 3))
    t = np.array([2, 1, 0, 2])
    a, b = xpnet.SoftmaxWithLoss(), xpnet.SoftmaxWithLoss()
    la = a.forward(be.asarray(s), be.asarray(t))
    lb = b.forward(be.asarray(s), be.asarray(ref.one_hot(t, 3)))
    assert_close(lb, float(xpnet.to_numpy(la)), be)
    assert_close(b.backward(), xpnet.to_numpy(a.backward()), be)


@pytest.mark.parametrize("big", [1000.0, 1e4])
def test_softmax_with_loss_is_finite_for_huge_logits(be, big):
    s = np.array([[big, -big, 0.0], [-big, big, 0.0]])
    layer = xpnet.SoftmaxWithLoss()
    loss = layer.forward(be.asarray(s), be.asarray(np.array([1, 1])))
    assert_close(loss, big, be)  # the first sample's loss is 2 big, the second's 0
    assert_close(layer.backward(), np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]) / 2, be)


def test_ten_class_model_with_small_weights_starts_at_ln_10(be, rng):
    model = xpnet.mlp([20, 30, 10], init=0.01, seed=3, backend=be)
    x = be.asarray(rng.random((64, 20)))
    t = be.asarray(rng.integers(0, 10, 64))
    assert_close(model.loss(x, t), math.log(10), be, rtol=0, atol=1e-3)


def test_sigmoid_with_loss_matches_reference_and_backward(be, rng):
    x = rng.standard_normal((6, 1)) * 3
    t = rng.integers(0, 2, (6, 1)).astype(np.float64)
    y = ref.sigmoid(x)
    expected = -np.mean(t * np.log(y) + (1 - t) * np.log(1 - y))
    layer = xpnet.SigmoidWithLoss()
    assert_close(layer.forward(be.asarray(x), be.asarray(t)), expected, be)
    assert_close(layer.backward(), (y - t) / 6, be)


@pytest.mark.parametrize("big", [1000.0, 1e4])
def test_sigmoid_with_loss_is_finite_for_huge_logits(be, big):
    layer = xpnet.SigmoidWithLoss()
    loss = layer.forward(be.asarray([[big], [-big]]), be.asarray([[0.0], [1.0]]))
    assert_close(loss, big, be)  # each sample is wrong by ``big``
    assert_close(layer.backward(), np.array([[1.0], [-1.0]]) / 2, be)


def test_mean_squared_error_forward_backward(be, rng):
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    layer = xpnet.MeanSquaredError()
    assert_close(layer.forward(be.asarray(y), be.asarray(t)), 0.5 * np.sum((y - t) ** 2) / 4, be)
    assert_close(layer.backward(), (y - t) / 4, be)


def test_loss_layers_gradient_check(be, rng):
    dt = _grad_dtype(be)
    eps = 1e-5 if dt == "float64" else 1e-2
    bound = 1e-6 if dt == "float64" else 5e-2
    x = be.asarray(rng.standard_normal((4, 3)))
    for loss, t in (
        (xpnet.SigmoidWithLoss(), be.asarray(rng.integers(0, 2, (4, 3)).astype(np.float64))),
        (xpnet.MeanSquaredError(), be.asarray(rng.standard_normal((4, 3)))),
        (xpnet.SoftmaxWithLoss(), be.asarray(np.array([0, 2, 1, 2]))),
    ):
        model = xpnet.Sequential([], loss)
        report = model.gradient_check(x, t, eps=eps, dtype=dt)
        assert report["x"] < bound, (type(loss).__name__, report)
