"""The Sequential model: textbook keys, backprop against NumPy, gradient checks, and one short
training run whose loss curve matches across backends."""

import numpy as np
import pytest
import reference as ref
from conftest import assert_close

import xpnet


def _two_layer(be, rng, sizes=(5, 7, 3)):
    n_in, hidden, out = sizes
    p = {"W1": rng.standard_normal((n_in, hidden)) * 0.5, "b1": rng.standard_normal(hidden) * 0.1,
         "W2": rng.standard_normal((hidden, out)) * 0.5, "b2": rng.standard_normal(out) * 0.1}
    model = xpnet.Sequential([
        xpnet.Affine(be.asarray(p["W1"]), be.asarray(p["b1"])), xpnet.ReLU(),
        xpnet.Affine(be.asarray(p["W2"]), be.asarray(p["b2"])),
    ])
    return model, p


def test_params_use_the_textbook_keys(be):
    model = xpnet.mlp([4, 6, 5, 3], batchnorm=True, backend=be)
    assert list(model.params) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
    assert list(model.state) == ["running_mean1", "running_var1", "running_mean2", "running_var2"]
    assert tuple(model.params["W2"].shape) == (6, 5)


def test_gradient_matches_numpy_two_layer_net(be, rng):
    model, p = _two_layer(be, rng)
    x, t = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    loss, grads = ref.two_layer_gradient(p, x, t)
    assert_close(model.loss(be.asarray(x), be.asarray(t)), loss, be)
    got = model.gradient(be.asarray(x), be.asarray(t))
    assert set(got) == set(grads)
    for k in grads:
        assert_close(got[k], grads[k], be)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_mlp_gradient_check_every_parameter(be, rng, activation):
    # few elements: each costs two forward passes, and a dask forward builds its graph anew
    model = xpnet.mlp([2, 3, 2], activation=activation, batchnorm=True, dropout=0.2, seed=1, backend=be)
    x = be.asarray(rng.standard_normal((4, 2)))
    t = be.asarray(np.array([0, 1, 1, 0]))
    dtype, eps, bound = ("float64", 1e-5, 1e-5) if be.supports_float64 else ("float32", 1e-2, 5e-2)
    report = model.gradient_check(x, t, eps=eps, dtype=dtype)
    assert set(report) == {"W1", "b1", "gamma1", "beta1", "W2", "b2", "x"}
    assert max(report.values()) < bound, report
    assert model.params["W1"].dtype == be.dtype  # restored after the float64 check


def test_numerical_gradient_works_without_host_only_tricks(be, rng):
    """Central differences on the model's own backend agree with backprop (no nditer)."""
    model, _ = _two_layer(be, rng, sizes=(3, 4, 3))  # 31 elements, two forward passes each
    x, t = be.asarray(rng.standard_normal((3, 3))), be.asarray(np.array([2, 0, 1]))
    dtype, eps = ("float64", 1e-5) if be.supports_float64 else ("float32", 1e-2)
    num = model.numerical_gradient(x, t, eps=eps, dtype=dtype)
    back = model.gradient(x, t)
    for k in back:
        assert xpnet.backend_name(num[k]) == be.name
        np.testing.assert_allclose(xpnet.to_numpy(num[k]), xpnet.to_numpy(back[k]),
                                   atol=1e-7 if dtype == "float64" else 5e-3)


def _train_curve(backend, rng_seed=0, steps=8):  # two passes over the 4 batches
    data = np.random.default_rng(rng_seed)
    X = data.standard_normal((64, 6))
    T = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)
    model = xpnet.mlp([6, 16, 3], seed=4, backend=backend)
    opt = xpnet.Momentum(lr=0.1)
    order = np.random.default_rng(9).permutation(64)
    Xd, Td = backend.asarray(X), backend.asarray(T)
    curve = []
    for i in range(steps):
        idx = backend.asarray(order[(i * 16) % 64:(i * 16) % 64 + 16])
        xb, tb = backend.xp.take(Xd, idx, axis=0), backend.xp.take(Td, idx, axis=0)
        grads = model.gradient(xb, tb)
        curve.append(float(xpnet.to_numpy(model.loss_layer.forward(model.predict(xb), tb))))
        opt.update(model.params, grads)
    return np.array(curve), model.accuracy(Xd, Td)


def test_short_training_run_matches_numpy_float64(be):
    reference_curve, reference_acc = _train_curve(xpnet.get_backend("numpy", dtype="float64"))
    curve, acc = _train_curve(be)
    np.testing.assert_allclose(curve, reference_curve, rtol=1e-4 if be.dtype_name == "float32" else 1e-10)
    assert curve[-1] < curve[0]
    assert acc == reference_acc


def test_numpy_float64_training_matches_hand_written_textbook_net(rng):
    """The oracle for the parity run: xpnet on numpy equals the book's TwoLayerNet by hand."""
    be = xpnet.get_backend("numpy", dtype="float64")
    model, p = _two_layer(be, rng)
    opt, oracle = xpnet.SGD(lr=0.2), ref.Optim("sgd", 0.2)
    x, t = rng.standard_normal((10, 5)), rng.integers(0, 3, 10)
    for _ in range(10):
        loss, grads = ref.two_layer_gradient(p, x, t)
        oracle.update(p, grads)
        assert float(model.loss(be.asarray(x), be.asarray(t))) == pytest.approx(loss, rel=1e-12)
        opt.update(model.params, model.gradient(be.asarray(x), be.asarray(t)))
    for k in p:
        np.testing.assert_allclose(model.params[k], p[k], rtol=1e-12)


def test_same_seed_same_initial_weights_everywhere(be):
    a = xpnet.mlp([8, 5, 2], seed=42, backend=be)
    b = xpnet.mlp([8, 5, 2], seed=42, backend=xpnet.get_backend("numpy", dtype="float64"))
    for k in b.params:
        assert_close(a.params[k], b.params[k], be)


def test_accuracy_is_a_float_and_batches_agree(be, rng):
    model, _ = _two_layer(be, rng)
    x, t = be.asarray(rng.standard_normal((10, 5))), be.asarray(rng.integers(0, 3, 10))
    whole = model.accuracy(x, t)
    assert isinstance(whole, float) and 0 <= whole <= 1
    assert model.accuracy(x, t, batch_size=3) == pytest.approx(whole)


def test_model_rejects_arrays_of_another_backend(be, rng):
    model, _ = _two_layer(be, rng)
    other = "numpy" if be.name != "numpy" else "array_api_strict"
    if not xpnet.backend.installed(other):
        pytest.skip(f"{other} not installed")
    x = xpnet.to_backend(be.asarray(rng.standard_normal((2, 5))), other)
    with pytest.raises(xpnet.BackendMismatchError, match=rf"Affine \(layer 0\) expects {be.name}.*to_backend"):
        model.predict(x)


def test_model_rejects_integer_features_and_bad_shapes(be):
    model = xpnet.mlp([4, 3], backend=be)
    with pytest.raises(xpnet.DTypeError, match="floating-point features"):
        model.predict(be.asarray(np.ones((2, 4), dtype=np.int64)))
    with pytest.raises(xpnet.ShapeError, match="4 input features.*got 5"):
        model.predict(be.asarray(np.ones((2, 5))))
    with pytest.raises(xpnet.LabelError, match="3 labels given for a batch of 2"):
        model.loss(be.asarray(np.ones((2, 4))), be.asarray(np.array([0, 1, 2])))


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(xpnet.ConfigError, match="unknown activation 'gelu'.*relu, sigmoid, tanh"):
        xpnet.mlp([2, 2, 2], activation="gelu")
