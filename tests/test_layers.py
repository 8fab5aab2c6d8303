"""Every layer: forward and backward against a float64 NumPy reference, then a gradient check."""

import numpy as np
import pytest
import reference as ref
from conftest import assert_close

import xpnet
from xpnet import layers as L


def _check(be):
    """(dtype, eps, bound) for gradient checks on this row: float64 where the device has it."""
    if be.supports_float64:
        return "float64", 1e-5, 1e-6
    return "float32", 1e-2, 5e-2


def _gradcheck(be, layers, x, out_shape, rng):
    """Worst relative error of every parameter and of the input, through an MSE loss."""
    t = be.asarray(rng.standard_normal(out_shape))
    model = xpnet.Sequential(layers, xpnet.MeanSquaredError())
    dtype, eps, bound = _check(be)
    report = model.gradient_check(x, t, eps=eps, dtype=dtype)
    assert report, "nothing was checked"
    worst = max(report.values())
    assert worst < bound, report
    return report


def test_affine_forward_backward(be, rng):
    x, W, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 5)), rng.standard_normal(5)
    dout = rng.standard_normal((4, 5))
    layer = xpnet.Affine(be.asarray(W), be.asarray(b))
    assert_close(layer.forward(be.asarray(x)), ref.affine_forward(x, W, b), be)
    dx, dW, db = ref.affine_backward(x, W, dout)
    assert_close(layer.backward(be.asarray(dout)), dx, be)
    assert_close(layer.grads["W"], dW, be)
    assert_close(layer.grads["b"], db, be)


def test_affine_flattens_nd_input_and_restores_dx_shape(be, rng):
    x, W, b = rng.standard_normal((2, 3, 2, 2)), rng.standard_normal((12, 4)), rng.standard_normal(4)
    dout = rng.standard_normal((2, 4))
    layer = xpnet.Affine(be.asarray(W), be.asarray(b))
    assert_close(layer.forward(be.asarray(x)), ref.affine_forward(x, W, b), be)
    assert_close(layer.backward(be.asarray(dout)), ref.affine_backward(x, W, dout)[0], be)


def test_affine_create_same_seed_same_weights_on_every_backend(be):
    layer = xpnet.Affine.create(6, 4, init="he", rng=7, backend=be)
    expected = np.random.default_rng(7).standard_normal((6, 4)) * np.sqrt(2 / 6)
    assert_close(layer.params["W"], expected, be)
    assert_close(layer.params["b"], np.zeros(4), be)


def test_affine_gradient_check(be, rng):
    layer = xpnet.Affine(be.asarray(rng.standard_normal((3, 4))), be.asarray(rng.standard_normal(4)))
    report = _gradcheck(be, [layer], be.asarray(rng.standard_normal((5, 3))), (5, 4), rng)
    assert set(report) == {"W1", "b1", "x"}


@pytest.mark.parametrize(
    "cls, f, df",
    [
        (xpnet.ReLU, lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
        (xpnet.Sigmoid, ref.sigmoid, lambda x: ref.sigmoid(x) * (1 - ref.sigmoid(x))),
        (xpnet.Tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    ],
    ids=["ReLU", "Sigmoid", "Tanh"],
)
def test_activation_forward_backward_and_gradient_check(be, rng, cls, f, df):
    x = rng.standard_normal((4, 5))
    x = np.where(np.abs(x) < 0.05, 0.5, x)  # keep ReLU's kink out of the finite differences
    dout = rng.standard_normal((4, 5))
    layer = cls()
    assert_close(layer.forward(be.asarray(x)), f(x), be)
    dout_dev = be.asarray(dout)
    assert_close(layer.backward(dout_dev), dout * df(x), be)
    assert_close(dout_dev, dout, be)  # the caller's gradient is not overwritten
    _gradcheck(be, [cls()], be.asarray(x), (4, 5), rng)


def test_softmax_layer_forward_backward_and_gradient_check(be, rng):
    x, dout = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    layer = xpnet.Softmax()
    y = ref.softmax(x)
    assert_close(layer.forward(be.asarray(x)), y, be)
    jac_vec = y * (dout - (dout * y).sum(axis=1, keepdims=True))
    assert_close(layer.backward(be.asarray(dout)), jac_vec, be)
    _gradcheck(be, [xpnet.Softmax()], be.asarray(x), (3, 4), rng)


def test_dropout_train_and_eval(be, rng):
    x = rng.standard_normal((50, 40))
    layer = xpnet.Dropout(0.3, rng=11)
    out = xpnet.to_numpy(layer.forward(be.asarray(x), train=True))
    mask = np.random.default_rng(11).random((50, 40)) >= 0.3  # the same host draw everywhere
    np.testing.assert_allclose(out, x * mask, rtol=1e-6)
    assert 0.6 < mask.mean() < 0.8
    assert_close(layer.backward(be.asarray(np.ones((50, 40)))), mask * 1.0, be)
    assert_close(layer.forward(be.asarray(x), train=False), x * 0.7, be)


def test_dropout_gradient_check_with_frozen_mask(be, rng):
    layers = [xpnet.Affine(be.asarray(rng.standard_normal((3, 6))), be.asarray(np.zeros(6))),
              xpnet.Dropout(0.5, rng=2)]
    _gradcheck(be, layers, be.asarray(rng.standard_normal((4, 3))), (4, 6), rng)


def test_batchnorm_forward_backward(be, rng):
    x = rng.standard_normal((6, 4)) * 3 + 1
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    dout = rng.standard_normal((6, 4))
    layer = xpnet.BatchNormalization(be.asarray(gamma), be.asarray(beta))
    assert_close(layer.forward(be.asarray(x), train=True), ref.batchnorm_forward(x, gamma, beta), be)
    dx, dgamma, dbeta = ref.batchnorm_backward(x, gamma, dout)
    assert_close(layer.backward(be.asarray(dout)), dx, be, atol=1e-4 if be.dtype_name == "float32" else 1e-10)
    assert_close(layer.grads["gamma"], dgamma, be)
    assert_close(layer.grads["beta"], dbeta, be)


def test_batchnorm_running_stats_used_in_eval(be, rng):
    x = rng.standard_normal((8, 3)) * 2 + 5
    layer = xpnet.BatchNormalization.create(3, backend=be, momentum=0.5)
    layer.forward(be.asarray(x), train=True)
    mean, var = 0.5 * x.mean(0), 0.5 * 1.0 + 0.5 * x.var(0)  # the running variance starts at 1
    assert_close(layer.state["running_mean"], mean, be)
    assert_close(layer.state["running_var"], var, be)
    out = layer.forward(be.asarray(x), train=False)
    assert_close(out, (x - mean) / np.sqrt(var + 1e-7), be)


def test_batchnorm_gradient_check(be, rng):
    layer = xpnet.BatchNormalization(be.asarray(rng.standard_normal(3) + 1), be.asarray(rng.standard_normal(3)))
    report = _gradcheck(be, [layer], be.asarray(rng.standard_normal((5, 3))), (5, 3), rng)
    assert set(report) == {"gamma1", "beta1", "x"}


def test_matmul_node(be, rng):
    x, W, dout = rng.standard_normal((2, 3)), rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    node = xpnet.MatMul(be.asarray(W))
    assert_close(node.forward(be.asarray(x)), x @ W, be)
    assert_close(node.backward(be.asarray(dout)), dout @ W.T, be)
    assert_close(node.grads["W"], x.T @ dout, be)
    _gradcheck(be, [xpnet.MatMul(be.asarray(W))], be.asarray(x), (2, 4), rng)


def test_repeat_and_sum_nodes(be, rng):
    row, dout = rng.standard_normal((1, 3)), rng.standard_normal((4, 3))
    rep = xpnet.Repeat(4)
    assert_close(rep.forward(be.asarray(row)), np.repeat(row, 4, axis=0), be)
    assert_close(rep.backward(be.asarray(dout)), dout.sum(axis=0, keepdims=True), be)
    s = xpnet.Sum()
    assert_close(s.forward(be.asarray(dout)), dout.sum(axis=0, keepdims=True), be)
    assert_close(s.backward(be.asarray(row)), np.repeat(row, 4, axis=0), be)
    _gradcheck(be, [xpnet.Repeat(4)], be.asarray(row), (4, 3), rng)
    _gradcheck(be, [xpnet.Sum()], be.asarray(dout), (1, 3), rng)


def test_bad_layer_shapes_are_named(be, rng):
    with pytest.raises(xpnet.ShapeError, match="Affine.*W of shape"):
        xpnet.Affine(be.asarray(np.zeros((3, 4))), be.asarray(np.zeros(5)))
    layer = xpnet.Affine(be.asarray(np.zeros((3, 4))), be.asarray(np.zeros(4)))
    with pytest.raises(xpnet.ShapeError, match="3 input features.*got 5"):
        layer.forward(be.asarray(np.zeros((2, 5))))
    with pytest.raises(xpnet.ShapeError, match="Repeat"):
        xpnet.Repeat(2).forward(be.asarray(np.zeros((2, 3))))


def test_unknown_initializer_and_bad_dropout_ratio():
    with pytest.raises(xpnet.ConfigError, match="unknown initializer 'lecun'"):
        L.init_std("lecun", 4)
    with pytest.raises(xpnet.ConfigError, match=r"ratio must be in \[0, 1\)"):
        xpnet.Dropout(1.5)
