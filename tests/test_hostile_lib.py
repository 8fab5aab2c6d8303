"""Hostile inputs to the library's own functions: silent wrong answers and raw built-in
errors become right answers or xpnet errors that name the fix, on every backend row."""

import math
import os
import sys
import time

import numpy as np
import pytest
import reference as ref
from conftest import assert_close, tally
from procs import run

import xpnet
from xpnet import checkpoint as ckpt
from xpnet import functional as F
from xpnet import layers as L


def ints(be, values, dtype=None):
    return be.asarray(np.array(values, dtype=np.int64), dtype=dtype)


@pytest.fixture
def model(be):
    return xpnet.mlp([4, 5, 3], seed=0, backend=be)


def X(be, n=4, rng=None):
    rng = rng or np.random.default_rng(0)
    return be.asarray(rng.standard_normal((n, 4)))


# ---------------------------------------------------------------------- 1. accuracy labels
BAD_ACCURACY_LABELS = [
    ("a (N, 1) label column", lambda be: ints(be, [[0], [1], [2], [1]]), xpnet.LabelError, r"shape \(N,\)"),
    ("one 0-d label for 4 samples", lambda be: ints(be, 1), xpnet.LabelError, "single.*for a batch of 4"),
    ("one label for 4 samples", lambda be: ints(be, [1]), xpnet.LabelError, "1 labels given for a batch of 4"),
    ("more labels than samples", lambda be: ints(be, [0, 1, 2, 0, 1]), xpnet.LabelError, "5 labels given"),
    ("labels out of range", lambda be: ints(be, [0, 1, 2, 3]), xpnet.LabelError, r"\[0, 2\].*from 0 to 3"),
    ("negative labels", lambda be: ints(be, [0, -1, 2, 1]), xpnet.LabelError, "from -1 to 2"),
    ("float labels", lambda be: be.asarray(np.array([0.0, 1, 2, 1])), xpnet.LabelError, "float labels"),
    ("bool labels", lambda be: be.asarray(np.array([True, False, True, True])), xpnet.LabelError, "boolean"),
    ("NaN one-hot rows", lambda be: be.asarray(np.full((4, 3), np.nan)), xpnet.LabelError, "finite"),
    ("a Python list", lambda be: [0, 1, 2, 1], xpnet.BackendMismatchError, "expected a .*array, got list"),
]


@pytest.mark.parametrize("case, make, error, message", BAD_ACCURACY_LABELS, ids=[c[0] for c in BAD_ACCURACY_LABELS])
def test_accuracy_validates_labels_as_the_loss_does(be, model, case, make, error, message):
    x = X(be)
    with pytest.raises(error, match=message):
        model.accuracy(x, make(be))
    with pytest.raises(error, match=message):
        F.accuracy(model.predict(x), make(be))
    tally("hostile inputs", 2)


def test_accuracy_without_checks_still_refuses_broadcast_labels(be, model):
    """``check=False`` skips the value checks (a sync) but not the free shape checks: a (N, 1)
    column against (N,) predictions would compare N x N pairs."""
    scores = model.predict(X(be))
    for t in (ints(be, [[0], [1], [2], [1]]), ints(be, [1]), ints(be, 1)):
        with pytest.raises(xpnet.LabelError):
            F.accuracy(scores, t, check=False)
    tally("hostile inputs", 3)


@pytest.mark.parametrize("bs", [0, -1, 1.5, True, "2"])
def test_accuracy_batch_size_must_be_a_positive_int(be, model, bs):
    with pytest.raises(xpnet.ConfigError, match="batch_size must be an integer >= 1"):
        model.accuracy(X(be), ints(be, [0, 1, 2, 1]), batch_size=bs)
    tally("hostile inputs", 1)


def test_model_accuracy_runs_the_input_checks(be, model):
    t = ints(be, [0, 1, 2, 1])
    nan = be.asarray(np.array([[np.nan, 0, 0, 0]] + [[0.0] * 4] * 3))
    with pytest.raises(xpnet.NonFiniteError, match="accuracy input: 1 NaN or inf"):
        model.accuracy(nan, t)
    with pytest.raises(xpnet.DTypeError, match="accuracy input: expected floating-point features"):
        model.accuracy(be.asarray(np.ones((4, 4), dtype=np.int64)), t)
    with pytest.raises(xpnet.ShapeError, match="4 input features per sample, got 5"):
        model.accuracy(be.asarray(np.ones((4, 5))), t)
    tally("hostile inputs", 3)


# ---------------------------------------------------------------------- 2. binary models
def test_one_output_column_is_a_binary_logit(be, rng):
    """``score > 0`` is class 1: labels made from the model's own scores give accuracy 1."""
    model = xpnet.mlp([4, 8, 1], loss="sigmoid", seed=3, backend=be)
    x = be.asarray(rng.standard_normal((40, 4)))
    s = xpnet.to_numpy(model.predict(x))[:, 0]
    y = (s > 0).astype(np.int64)
    assert 0 < y.sum() < 40  # both classes present: argmax over one column would say 0 for all
    for t in (be.asarray(y), be.asarray(y[:, None]), be.asarray(y[:, None].astype(np.float64))):
        assert model.accuracy(x, t) == 1.0
        assert model.accuracy(x, t, batch_size=7) == pytest.approx(1.0)
        assert_close(F.accuracy(model.predict(x), t), 1.0, be)
    assert model.accuracy(x, be.asarray(1 - y)) == 0.0
    F.check_labels(be.asarray(y), 2, 40)  # what a trainer asks for a one-output model still passes
    F.check_binary_labels(be.asarray(y[:, None]), 40)


BAD_BINARY = [
    ("label 2", lambda be: ints(be, [0, 1, 2, 1]), "must be 0 or 1.*from 0 to 2"),
    ("negative label", lambda be: ints(be, [0, -1, 1, 1]), "from -1 to 1"),
    ("bool labels", lambda be: be.asarray(np.array([True, False, True, True])), "boolean"),
    ("0.5 is not a label", lambda be: be.asarray(np.array([0.0, 0.5, 1, 1])), "1 target.*neither 0 nor 1"),
    ("NaN target", lambda be: be.asarray(np.array([0.0, np.nan, 1, 1])), r"in \[0, 1\]"),
    ("(N, 2) targets for one column", lambda be: be.asarray(np.eye(4)[:, :2]), r"\(N,\) or \(N, 1\)"),
]


@pytest.mark.parametrize("case, make, message", BAD_BINARY, ids=[c[0] for c in BAD_BINARY])
def test_binary_accuracy_refuses_non_binary_labels(be, rng, case, make, message):
    scores = be.asarray(rng.standard_normal((4, 1)))
    with pytest.raises(xpnet.LabelError, match=message):
        F.accuracy(scores, make(be))
    tally("hostile inputs", 1)


def test_sigmoid_loss_validates_targets_and_takes_probabilities(be, rng):
    x = be.asarray(rng.standard_normal((4, 1)))
    layer = xpnet.SigmoidWithLoss()
    p = np.array([[0.0], [0.25], [1.0], [0.5]])  # probabilities are valid BCE targets
    expected = np.sum(np.logaddexp(0, xpnet.to_numpy(x).astype(np.float64)) - p * xpnet.to_numpy(x)) / 4
    assert_close(layer.forward(x, be.asarray(p)), expected, be)
    for bad, message in ((ints(be, [0, 2, 1, 1]), "must be 0 or 1"),
                         (be.asarray(np.array([0.0, np.nan, 1, 1])), r"in \[0, 1\]"),
                         (be.asarray(np.array([0.0, 1.5, 1, 1])), r"in \[0, 1\].*1.5"),
                         (be.asarray(np.array([True, False, True, True])), "boolean"),
                         (ints(be, [0, 1, 1]), "3 labels given for a batch of 4")):
        with pytest.raises(xpnet.LabelError, match=message):
            layer.forward(x, bad)
    as_float = layer.forward(x, be.asarray(np.array([[0.0], [1], [1], [0]])))
    assert_close(layer.forward(x, ints(be, [0, 1, 1, 0])), xpnet.to_numpy(as_float), be)
    tally("hostile inputs", 5)


# ---------------------------------------------------------------------- 3. check per call
@pytest.mark.parametrize("cls", [xpnet.SoftmaxWithLoss, xpnet.SigmoidWithLoss, xpnet.MeanSquaredError])
def test_every_loss_takes_check_per_call(be, cls):
    x = be.asarray(np.zeros((2, 3)))
    bad = {xpnet.SoftmaxWithLoss: ints(be, [0, 7]), xpnet.SigmoidWithLoss: be.asarray(np.full((2, 3), 5.0)),
           xpnet.MeanSquaredError: be.asarray(np.full((2, 3), np.nan))}[cls]
    layer = cls()
    layer.forward(x, bad, check=False)  # skipped for this call only
    with pytest.raises((xpnet.LabelError, xpnet.NonFiniteError)):
        layer.forward(x, bad)  # nothing leaked: the default still checks
    quiet = cls(check_labels=False)  # the constructor sets the default
    quiet.forward(x, bad)
    with pytest.raises((xpnet.LabelError, xpnet.NonFiniteError)):
        quiet.forward(x, bad, check=True)
    assert quiet.check_labels is False and layer.check_labels is True  # never mutated
    tally("hostile inputs", 2)


def test_sequential_loss_passes_check_through(be, model):
    bad = ints(be, [0, 9, 1, 2])
    model.loss(X(be), bad, check=False)
    with pytest.raises(xpnet.LabelError, match=r"\[0, 2\]"):
        model.loss(X(be), bad)
    quiet = xpnet.Sequential(model.layers, xpnet.SoftmaxWithLoss(check_labels=False))
    with pytest.raises(xpnet.LabelError, match=r"\[0, 2\]"):
        quiet.loss(X(be), bad, check=True)
    scores = model.predict(X(be))
    model.loss_layer.forward(scores, bad, check=False)  # the trainer's call
    tally("hostile inputs", 2)


# ---------------------------------------------------------------------- 4. cast, then check
@pytest.mark.parametrize("name", ["numpy", "array_api_strict", "torch", "jax", "dask"])
def test_float64_input_that_overflows_float32_is_refused(name):
    """1e39 fits float64 but is inf in float32: the check sees the values the model would."""
    if not xpnet.backend.installed(name):
        pytest.skip(f"{name} is not installed ({xpnet.backend.INSTALL_HINT[name]})")
    f64, f32 = xpnet.get_backend(name, dtype="float64"), xpnet.get_backend(name, dtype="float32")
    model = xpnet.mlp([4, 3], seed=0, backend=f32)
    x = np.zeros((3, 4))
    x[1, 2] = 1e39
    overflow = r"values up to 1e\+39 overflow the model's float32 \(max ~3.4e\+38\)"
    with pytest.raises(xpnet.NonFiniteError, match=overflow):
        model.predict(f64.asarray(x))
    x[1, 2] = np.nan
    with pytest.raises(xpnet.NonFiniteError, match="1 NaN or inf"):
        model.predict(f64.asarray(x))
    x[1, 2] = 1e38  # in range: cast and used
    out = xpnet.to_numpy(model.predict(f64.asarray(x)))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    tally("hostile inputs", 2)


# ---------------------------------------------------------------------- 5. label dtypes
def test_results_do_not_depend_on_the_integer_dtype_of_labels(be, rng):
    """300 classes: a uint8 or int8 range of classes would wrap and make two-hot rows."""
    info = be.xp.__array_namespace_info__()
    kinds = info.dtypes(device=be.device, kind="integral")
    s = rng.standard_normal((4, 300))
    t = np.array([0, 7, 100, 127])
    y, T = ref.softmax(s), ref.one_hot(t, 300)
    scores = be.asarray(s)
    for name, dt in kinds.items():
        labels = be.asarray(t, dtype=dt)
        layer = xpnet.SoftmaxWithLoss()
        assert_close(layer.forward(scores, labels), ref.cross_entropy(s, t), be, err_msg=name)
        assert_close(layer.backward(), (y - T) / 4, be, err_msg=name)
        assert_close(F.cross_entropy(scores, labels), ref.cross_entropy(s, t), be, err_msg=name)
        assert_close(F.accuracy(scores, labels), np.mean(s.argmax(1) == t), be, err_msg=name)
        assert_close(F.one_hot(labels, 300, be.dtype), T, be, err_msg=name)
        with pytest.raises(xpnet.LabelError, match=r"\[0, 99\]"):
            F.check_labels(labels, 100)
    assert len(kinds) >= 4, kinds
    tally("hostile inputs", len(kinds))


# ---------------------------------------------------------------------- 6. extreme logits
def test_losses_are_finite_for_logits_at_the_ends_of_the_dtype(be):
    M = float(np.finfo(be.dtype_name).max)
    s = np.array([[M, -M], [-M, M], [M, M], [-M, -M], [0.5 * M, -M], [0.0, -M]])
    t = np.array([1, 0, 0, 1, 0, 1])
    layer = xpnet.SoftmaxWithLoss()
    loss = float(xpnet.to_numpy(layer.forward(be.asarray(s), be.asarray(t))))
    grad = xpnet.to_numpy(layer.backward())
    assert math.isfinite(loss) and loss > 1e30
    y = np.array([[1, 0], [0, 1], [0.5, 0.5], [0.5, 0.5], [1, 0], [1, 0]])
    np.testing.assert_allclose(grad, (y - ref.one_hot(t, 2)) / 6, atol=1e-6)
    assert math.isfinite(float(xpnet.to_numpy(F.cross_entropy(be.asarray(s), be.asarray(t)))))
    assert math.isfinite(float(xpnet.to_numpy(F.cross_entropy(be.asarray(s), be.asarray(ref.one_hot(t, 2))))))
    assert np.isfinite(xpnet.to_numpy(F.log_softmax(be.asarray(s)))).all()
    np.testing.assert_allclose(xpnet.to_numpy(F.softmax(be.asarray(s))), y, atol=1e-6)
    assert np.isfinite(xpnet.to_numpy(F.logsumexp(be.asarray(s)))).all()
    sig = xpnet.SigmoidWithLoss()
    x = be.asarray(np.array([[M], [-M], [M], [-M]]))
    loss = float(xpnet.to_numpy(sig.forward(x, be.asarray(np.array([[0.0], [1], [1], [0]])))))
    assert math.isfinite(loss) and loss > 1e30
    np.testing.assert_allclose(xpnet.to_numpy(sig.backward()), np.array([[1.0], [-1], [0], [0]]) / 4, atol=1e-6)
    tally("hostile inputs", 3)


# ---------------------------------------------------------------------- 7. batch norm
def test_untrained_batchnorm_in_evaluation_passes_input_through(be, rng):
    x = rng.standard_normal((5, 3)) * 3
    layer = xpnet.BatchNormalization.create(3, backend=be)
    assert_close(layer.state["running_var"], np.ones(3), be)
    assert_close(layer.forward(be.asarray(x), train=False), x / np.sqrt(1 + 1e-7), be)


# ---------------------------------------------------------------------- 8. optimizers
def _grads(be, model, **changes):
    g = {k: be.asarray(np.ones(tuple(v.shape))) for k, v in model.params.items()}
    g.update(changes)
    return {k: v for k, v in g.items() if v is not None}


BAD_GRADS = [
    ("wrong shape (would broadcast)", lambda be, m: _grads(be, m, b1=be.asarray(np.ones(1))),
     xpnet.ShapeError, r"grads\['b1'\] has shape \(1,\) but params\['b1'\] has \(5,\)"),
    ("missing key", lambda be, m: _grads(be, m, W2=None), xpnet.ConfigError, r"missing \['W2'\]"),
    ("extra key", lambda be, m: _grads(be, m, W9=be.asarray(np.ones(2))), xpnet.ConfigError, r"unexpected \['W9'\]"),
    ("a list", lambda be, m: _grads(be, m, W1=[[1.0] * 5] * 4), xpnet.BackendMismatchError, r"grads\['W1'\] is a list"),
    ("wrong dtype", lambda be, m: _grads(be, m, b2=be.asarray(np.ones(3), dtype=be.xp.int32)), xpnet.DTypeError,
     "int32"),
    ("not a dict", lambda be, m: [1, 2], xpnet.ConfigError, "grads must be a dict"),
]


@pytest.mark.parametrize("case, make, error, message", BAD_GRADS, ids=[c[0] for c in BAD_GRADS])
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_bad_gradients_are_refused_before_any_change(be, model, name, case, make, error, message):
    opt = xpnet.get_optimizer(name, lr=0.1)
    before = {k: xpnet.to_numpy(v).copy() for k, v in model.params.items()}
    with pytest.raises(error, match=message):
        opt.update(model.params, make(be, model))
    for k, v in model.params.items():
        np.testing.assert_array_equal(xpnet.to_numpy(v), before[k])
    assert opt.state["step"] == 0
    tally("hostile inputs", 1)


def test_one_optimizer_cannot_serve_two_models(be, tmp_path):
    a, b = xpnet.mlp([4, 5, 3], seed=0, backend=be), xpnet.mlp([4, 5, 3], seed=1, backend=be)
    x, t = X(be), ints(be, [0, 1, 2, 1])
    opt = xpnet.Adam(lr=0.01)
    opt.update(a.params, a.gradient(x, t))
    with pytest.raises(xpnet.ConfigError, match="already updates another model's parameters.*one optimizer per model"):
        opt.update(b.params, b.gradient(x, t))
    opt.update(a.params, a.gradient(x, t))  # its own model still works
    ckpt.save(tmp_path / "c.npz", a, opt)
    m2, o2, _ = ckpt.load(tmp_path / "c.npz", backend=be)
    o2.update(m2.params, m2.gradient(x, t))  # a restored optimizer works with its restored model
    opt.update(a.params, a.gradient(x, t))
    for k in a.params:
        assert_close(m2.params[k], xpnet.to_numpy(a.params[k]), be)
    tally("hostile inputs", 1)


def test_optimizer_refuses_an_empty_model_and_bad_hyperparameters():
    with pytest.raises(xpnet.ConfigError, match="no parameters to update"):
        xpnet.SGD().update({}, {})
    for call in (lambda: xpnet.Momentum(momentum="0.9"), lambda: xpnet.Adam(eps=0), lambda: xpnet.SGD(lr=True),
                 lambda: xpnet.SGD(weight_decay="x"), lambda: xpnet.get_optimizer("adam", betas=0.9)):
        with pytest.raises(xpnet.ConfigError):
            call()
    tally("hostile inputs", 6)


# ---------------------------------------------------------------------- 9. structures
def test_structures_the_layers_cannot_support_are_refused(be, rng):
    fc = xpnet.Affine.create(4, 4, rng=0, backend=be)
    with pytest.raises(xpnet.ConfigError, match=r"layers\[0\] and layers\[2\] are the same Affine"):
        xpnet.Sequential([fc, xpnet.ReLU(), fc])
    with pytest.raises(xpnet.ConfigError, match=r"layers\[1\] is a str, not a layer"):
        xpnet.Sequential([fc, "relu"])
    with pytest.raises(xpnet.ConfigError, match="loss must be a loss layer"):
        xpnet.Sequential([fc], loss="softmax")
    with pytest.raises(xpnet.ConfigError, match="list of layers"):
        xpnet.Sequential(fc)
    empty = xpnet.Sequential([])
    with pytest.raises(xpnet.ConfigError, match="no layers"):
        empty.predict(X(be))
    with pytest.raises(xpnet.ConfigError, match="no layers"):
        empty.accuracy(X(be), ints(be, [0, 1, 2, 1]))
    with pytest.raises(xpnet.ConfigError, match="no parameters to update"):
        xpnet.SGD().update(empty.params, empty.gradient(X(be), ints(be, [0, 1, 2, 3])))
    other = xpnet.Affine(be.asarray(np.ones((4, 2)), dtype=be.xp.float32 if be.dtype_name == "float64" else None),
                         be.asarray(np.ones(2), dtype=be.xp.float32 if be.dtype_name == "float64" else None))
    if be.dtype_name == "float64":
        with pytest.raises(xpnet.DTypeError, match="one dtype"):
            xpnet.Sequential([fc, other])
    tally("hostile inputs", 8)


# ---------------------------------------------------------------------- 10. nonsense settings
@pytest.mark.parametrize("call, message", [
    (lambda: xpnet.mlp([4.9, 5.5, 3]), r"sizes\[0\] must be an integer >= 1, got 4.9"),
    (lambda: xpnet.mlp([4, True, 3]), r"sizes\[1\] must be an integer"),
    (lambda: xpnet.mlp(["4", 3]), r"sizes\[0\] must be an integer"),
    (lambda: xpnet.mlp(784), "list of integers"),
    (lambda: xpnet.mlp([4, 3], seed=-1), "seed must be an integer >= 0"),
    (lambda: L.as_rng(-1), "seed must be an integer >= 0"),
    (lambda: L.as_rng(True), "int seed"),
    (lambda: xpnet.Dropout("0.5"), "Dropout ratio must be a number, got '0.5'"),
    (lambda: xpnet.Dropout(True), "Dropout ratio must be a number"),
    (lambda: xpnet.Dropout(float("nan")), "Dropout ratio must be a finite number"),
    (lambda: xpnet.mlp([4, 3], dropout="0.5"), "dropout must be a number"),
    (lambda: xpnet.mlp([4, 3], init=[1]), "init.*must be a number"),
    (lambda: xpnet.Repeat(0), "Repeat n must be an integer >= 1"),
    (lambda: xpnet.mlp([4, 3], backend=np), "backend must be a name"),
])
def test_nonsense_settings_are_refused(call, message):
    with pytest.raises(xpnet.ConfigError, match=message):
        call()
    tally("hostile inputs", 1)


def test_a_model_too_large_for_memory_is_refused_before_allocating():
    start = time.perf_counter()
    with pytest.raises(xpnet.ConfigError, match=r"mlp\(\[64, 1000000000, 10\]\) in float32 needs about .* GB"):
        xpnet.mlp([64, 1_000_000_000, 10])
    with pytest.raises(xpnet.ConfigError, match=r"Affine\(64, 1000000000000\) needs about"):
        xpnet.Affine.create(64, 10**12)
    assert time.perf_counter() - start < 5  # nothing was drawn
    tally("hostile inputs", 2)


def test_mlp_refuses_a_backend_with_a_conflicting_dtype_or_device(be):
    other = "float32" if be.dtype_name == "float64" else "float64"
    with pytest.raises(xpnet.ConfigError, match=f"dtype='{other}' conflicts with the backend given"):
        xpnet.mlp([4, 3], backend=be, dtype=other)
    m = xpnet.mlp([4, 3], backend=be, dtype=be.dtype_name)  # repeating its own is fine
    assert m.dtype == be.dtype
    tally("hostile inputs", 1)


def test_mlp_refuses_a_backend_with_a_conflicting_device():
    pytest.importorskip("array_api_strict", reason="array_api_strict not installed")
    on1 = xpnet.get_backend("array_api_strict", device="device1", dtype="float32")
    with pytest.raises(xpnet.ConfigError, match="device='cpu' conflicts"):
        xpnet.mlp([4, 3], backend=on1, device="cpu")
    assert xpnet.backend.device(xpnet.mlp([4, 3], backend=on1, device="device1").params["W1"]) == on1.device


def test_affine_refuses_integer_or_mismatched_weights(be):
    W, b = be.asarray(np.ones((4, 2))), be.asarray(np.zeros(2))
    with pytest.raises(xpnet.DTypeError, match="Affine W must be floating-point, got dtype int64"):
        xpnet.Affine(be.asarray(np.ones((4, 2), dtype=np.int64)), b)
    with pytest.raises(xpnet.DTypeError, match="Affine b must be floating-point"):
        xpnet.Affine(W, be.asarray(np.zeros(2, dtype=np.int64)))
    with pytest.raises(xpnet.BackendMismatchError, match="Affine W must be an array"):
        xpnet.Affine([[1.0, 2.0]] * 4, b)
    if be.supports_float64:
        odd = be.xp.float32 if be.dtype_name == "float64" else be.xp.float64
        with pytest.raises(xpnet.DTypeError, match="Affine b has dtype"):
            xpnet.Affine(W, be.asarray(np.zeros(2), dtype=odd))
    tally("hostile inputs", 4)


def test_affine_refuses_weights_from_two_libraries_or_devices():
    pytest.importorskip("array_api_strict", reason="array_api_strict not installed")
    cpu = xpnet.get_backend("array_api_strict", dtype="float32")
    dev1 = xpnet.get_backend("array_api_strict", device="device1", dtype="float32")
    with pytest.raises(xpnet.BackendMismatchError, match="Affine b expects array_api_strict arrays on device"):
        xpnet.Affine(cpu.asarray(np.ones((4, 2))), dev1.asarray(np.zeros(2)))
    with pytest.raises(xpnet.BackendMismatchError, match="Affine b expects numpy"):
        xpnet.Affine(np.ones((4, 2), np.float32), cpu.asarray(np.zeros(2)))
    tally("hostile inputs", 2)


# ---------------------------------------------------------------------- 11. autograd tensors
def test_tensors_that_track_gradients_are_refused():
    torch = pytest.importorskip("torch", reason="torch not installed")
    be = xpnet.get_backend("torch", dtype="float32")
    model = xpnet.mlp([4, 3], backend=be)
    x = torch.ones((2, 4), requires_grad=True)
    for call in (lambda: model.predict(x), lambda: model.loss(x, torch.tensor([0, 1])),
                 lambda: model.accuracy(x, torch.tensor([0, 1]))):
        with pytest.raises(xpnet.BackendMismatchError, match=r"requires_grad=True.*detach\(\)"):
            call()
    W = torch.ones((4, 3), requires_grad=True)
    with pytest.raises(xpnet.BackendMismatchError, match="Affine W tracks gradients"):
        xpnet.Affine(W, torch.zeros(3))
    layer = xpnet.Affine(torch.ones((4, 3)), torch.zeros(3))
    layer.params["W"] = W
    with pytest.raises(xpnet.BackendMismatchError, match="parameter W1 tracks gradients"):
        xpnet.Sequential([layer])
    assert not model.params["W1"].requires_grad
    tally("hostile inputs", 5)


# ---------------------------------------------------------------------- 12. raw built-in errors
@pytest.mark.parametrize("make", [
    lambda be: xpnet.Affine.create(4, 2, backend=be), lambda be: xpnet.ReLU(), lambda be: xpnet.Sigmoid(),
    lambda be: xpnet.Tanh(), lambda be: xpnet.Softmax(), lambda be: xpnet.Dropout(0.5), lambda be: xpnet.Sum(),
    lambda be: xpnet.BatchNormalization.create(2, backend=be), lambda be: xpnet.MatMul(be.asarray(np.ones((2, 2)))),
    lambda be: xpnet.SoftmaxWithLoss(), lambda be: xpnet.SigmoidWithLoss(), lambda be: xpnet.MeanSquaredError(),
], ids=["Affine", "ReLU", "Sigmoid", "Tanh", "Softmax", "Dropout", "Sum", "BatchNormalization", "MatMul",
        "SoftmaxWithLoss", "SigmoidWithLoss", "MeanSquaredError"])
def test_backward_before_forward_is_named(be, make):
    with pytest.raises(xpnet.errors.CallOrderError, match=r"backward\(\) called before forward"):
        make(be).backward(be.asarray(np.ones((2, 2))))
    tally("hostile inputs", 1)


def test_model_backward_before_the_loss_is_named(be, model):
    with pytest.raises(xpnet.errors.CallOrderError, match="SoftmaxWithLoss.backward"):
        model.backward()
    assert isinstance(xpnet.errors.CallOrderError("x"), RuntimeError)


@pytest.mark.parametrize("kw, message", [
    ({"dtype": "bogus"}, "dtype must be 'float32' or 'float64'.*'bogus'"),
    ({"eps": 0}, "eps .* must be > 0"), ({"eps": -1e-3}, "must be > 0"),
    ({"eps": float("nan")}, "eps must be a finite number"), ({"eps": "1e-5"}, "eps must be a number"),
])
@pytest.mark.parametrize("method", ["gradient_check", "numerical_gradient"])
def test_gradient_check_arguments_are_validated(be, model, method, kw, message):
    with pytest.raises(xpnet.ConfigError, match=message):
        getattr(model, method)(X(be, 2), ints(be, [0, 1]), **kw)
    tally("hostile inputs", 1)


# ---------------------------------------------------------------------- 13. a true float64 message
def test_no_float64_message_names_a_way_that_works_or_says_why_not():
    pytest.importorskip("array_api_strict", reason="array_api_strict not installed")
    be = xpnet.get_backend("array_api_strict", device="no_float64", dtype="float32")
    model = xpnet.mlp([4, 3], backend=be)
    with pytest.raises(xpnet.DTypeError, match=r"no float64 in this process.*dtype='float32'.*"
                       r"xpnet.get_backend\('array_api_strict', dtype='float64'\)") as e:
        model.gradient_check(be.asarray(np.ones((2, 4))), be.asarray(np.array([0, 1])))
    assert "has no float64;" not in str(e.value)
    with pytest.raises(xpnet.BackendError, match="does not support float64"):  # and the hint says so here
        xpnet.get_backend("array_api_strict", device="no_float64", dtype="float64")


JAX_SCRIPT = """
import numpy as np, xpnet
be = xpnet.get_backend("jax", dtype="float32")
model = xpnet.mlp([3, 2], backend=be)
x, t = be.asarray(np.ones((2, 3))), be.asarray(np.array([0, 1]))
try:
    model.gradient_check(x, t)
except xpnet.DTypeError as e:
    print("REFUSED", e)
xpnet.get_backend("jax", dtype="float64")  # what the message says to do
print("WORST", max(model.gradient_check(x, t).values()))
"""


def test_jax_float32_message_tells_how_to_get_float64():
    """A fresh process (x64 off): the message's advice is followed and then works."""
    pytest.importorskip("jax", reason="jax not installed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(xpnet.__file__)),
                                                        os.environ.get("PYTHONPATH", "")])}
    env.pop("JAX_ENABLE_X64", None)
    p = run([sys.executable, "-c", JAX_SCRIPT], timeout=120, env=env)
    out, err = p.stdout, p.stderr
    assert p.returncode == 0, err
    assert "REFUSED" in out and "xpnet.get_backend('jax', dtype='float64')" in out, out
    assert "device cpu:0 has no float64" not in out
    assert float(out.split("WORST")[1]) < 1e-6, out


# ---------------------------------------------------------------------- 14. half precision
HALF = [("torch", "bfloat16"), ("torch", "float16"), ("numpy", "float16"), ("dask", "float16"),
        ("jax", "bfloat16"), ("jax", "float16")]
FIX = {"torch": "x.float()", "numpy": "x.astype(np.float32)", "jax": "x.astype(jnp.float32)",
       "dask": "xp.astype(x, xp.float32)"}


def _half(lib: str, name: str, values: np.ndarray):
    """``values`` as a ``lib`` array of dtype ``name``, made by the library itself."""
    if lib == "torch":
        import torch

        return torch.asarray(values).to(getattr(torch, name))
    if lib == "jax":
        import jax.numpy as jnp

        return jnp.asarray(values, dtype=getattr(jnp, name))
    if lib == "dask":
        import dask.array as da

        return da.from_array(values.astype(name))
    return values.astype(name)


def _as_the_message_says(lib: str, a):
    """``a`` cast the way the error message tells (FIX)."""
    if lib == "torch":
        return a.float()
    if lib == "jax":
        import jax.numpy as jnp

        return a.astype(jnp.float32)
    if lib == "numpy":
        return a.astype(np.float32)
    xp = xpnet.backend.namespace(a)
    return xp.astype(a, xp.float32)


HALF_ENTRIES = {  # (model, its backend, features x (4, 4), scores s (4, 3), labels t (4,)) -> a call
    "Sequential.predict": lambda m, be, x, s, t: m.predict(x),
    "Sequential.accuracy": lambda m, be, x, s, t: m.accuracy(x, t),
    "Sequential.gradient": lambda m, be, x, s, t: m.gradient(x, t),
    "Sequential.loss": lambda m, be, x, s, t: m.loss(x, t),
    "Sequential.gradient_check": lambda m, be, x, s, t: m.gradient_check(x, t, dtype="float32", eps=1e-2),
    "to_backend numpy": lambda m, be, x, s, t: xpnet.to_backend(x, "numpy"),
    "to_backend own": lambda m, be, x, s, t: xpnet.to_backend(x, be),
    "Backend.asarray": lambda m, be, x, s, t: be.asarray(x),
    "Backend.asarray numpy": lambda m, be, x, s, t: xpnet.get_backend("numpy").asarray(x),
    "from_host_like": lambda m, be, x, s, t: xpnet.backend.from_host_like(x, m.params["W1"]),
    "xpnet.accuracy": lambda m, be, x, s, t: xpnet.accuracy(s, t),
    "xpnet.cross_entropy": lambda m, be, x, s, t: xpnet.cross_entropy(s, t),
    "softmax": lambda m, be, x, s, t: xpnet.softmax(s),
    "log_softmax": lambda m, be, x, s, t: xpnet.log_softmax(s),
    "logsumexp": lambda m, be, x, s, t: xpnet.logsumexp(s),
    "SoftmaxWithLoss": lambda m, be, x, s, t: xpnet.SoftmaxWithLoss().forward(s, t),
    "SigmoidWithLoss": lambda m, be, x, s, t: xpnet.SigmoidWithLoss().forward(s[:, :1], t),
}
MODULES = {"torch": "torch", "numpy": "numpy", "dask": "dask.array", "jax": "jax"}


@pytest.mark.parametrize("entry", list(HALF_ENTRIES))
@pytest.mark.parametrize("lib, name", HALF, ids=[f"{lib}-{name}" for lib, name in HALF])
def test_half_precision_is_refused_with_the_cast_that_fixes_it(lib, name, entry):
    """float16 / bfloat16 features, scores or data to move: a DTypeError naming the dtype, what
    xpnet computes in and the cast; that cast then makes the same call work."""
    pytest.importorskip(MODULES[lib], reason=f"{lib} is not installed")
    be = xpnet.get_backend(lib, dtype="float32")
    model = xpnet.mlp([4, 3], backend=be)
    values = np.random.default_rng(0).standard_normal((4, 4))
    x, s, t = _half(lib, name, values), _half(lib, name, values[:, :3]), be.asarray(np.array([0, 1, 0, 1]))
    call = HALF_ENTRIES[entry]
    with pytest.raises(xpnet.DTypeError) as e:
        call(model, be, x, s, t)
    msg = str(e.value)
    assert f"dtype {name} is not supported" in msg and "float32 or float64" in msg and FIX[lib] in msg, msg
    call(model, be, _as_the_message_says(lib, x), _as_the_message_says(lib, s), t)
    tally("hostile inputs", 1)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_a_model_with_half_precision_parameters_is_refused(lib):
    pytest.importorskip(lib, reason=f"{lib} is not installed")
    be = xpnet.get_backend(lib, dtype="float32")
    rng = np.random.default_rng(0)
    model = xpnet.Sequential([xpnet.Affine(_half(lib, "float16", rng.standard_normal((4, 3))),
                                           _half(lib, "float16", np.zeros(3)))])
    x, t = be.asarray(rng.standard_normal((2, 4))), be.asarray(np.array([0, 2]))
    for call in (lambda: model.predict(x), lambda: model.gradient(x, t), lambda: model.accuracy(x, t)):
        with pytest.raises(xpnet.DTypeError, match=r"the model's parameters: dtype float16 is not supported"):
            call()
    tally("hostile inputs", 3)


def test_torch_bfloat16_read_back_names_the_cast_and_float16_still_reads_back():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    with pytest.raises(xpnet.DTypeError, match=r"to_numpy: dtype bfloat16 .*float32 or float64.*x\.float\(\)"):
        xpnet.to_numpy(torch.ones(2, dtype=torch.bfloat16))
    half = xpnet.to_numpy(torch.tensor([0.5, -2.0], dtype=torch.float16))  # reading back loses nothing
    assert half.dtype == np.float16 and half.tolist() == [0.5, -2.0]
    tally("hostile inputs", 1)


BF16_WITHOUT_ML_DTYPES = """
import sys
sys.modules["ml_dtypes"] = None  # as where jax is not imported: NumPy has no bfloat16
import numpy as np, torch, xpnet
from xpnet.backend import dtype_name, host_dtype
assert dtype_name(torch.bfloat16) == "bfloat16"
x = torch.ones((2, 4), dtype=torch.bfloat16)
model = xpnet.mlp([4, 3], backend="torch")
for call in (lambda: host_dtype(torch.bfloat16), lambda: model.predict(x),
             lambda: model.accuracy(x, torch.tensor([0, 1])), lambda: xpnet.to_backend(x, "numpy")):
    try:
        call()
        print("NO ERROR")
    except xpnet.DTypeError as e:
        print("REFUSED", e)
"""


def test_torch_bfloat16_is_refused_where_numpy_has_no_bfloat16():
    """The reported TypeError ("data type 'bfloat16' not understood") came from mapping torch's
    bfloat16 to NumPy in a process without ml_dtypes (no jax imported): a fresh process."""
    pytest.importorskip("torch", reason="torch is not installed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(xpnet.__file__)),
                                                        os.environ.get("PYTHONPATH", "")])}
    p = run([sys.executable, "-c", BF16_WITHOUT_ML_DTYPES], timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("REFUSED") for line in lines), p.stdout
    assert all("bfloat16 is not supported" in line and "float32 or float64" in line for line in lines), p.stdout
    assert all("x.float()" in line for line in lines[1:]), p.stdout
    tally("hostile inputs", 4)


# ---------------------------------------------------------------------- further cases of the same classes
def test_further_raw_errors_and_silent_answers_are_named(be, model, rng):
    t = ints(be, [0, 1, 2, 1])
    with pytest.raises(xpnet.LabelError, match="one_hot needs integer labels"):
        F.one_hot(be.asarray(np.array([0.0, 1.9])), 3)  # would truncate 1.9 to class 1
    for c in (0, 2.5, "3", True):
        with pytest.raises(xpnet.LabelError, match="number of classes must be an integer >= 1"):
            F.check_labels(t, c)
    with pytest.raises(xpnet.DTypeError, match="scores must be floating-point"):
        F.softmax(t)
    with pytest.raises(xpnet.ShapeError, match=r"W1 has shape \(4, 5\); cannot replace it"):
        model.params["W1"] = be.asarray(np.ones((5, 4)))
    with pytest.raises(xpnet.LabelError, match=r"\[0, 2\] for 3 classes; got values from 0 to 5"):
        model.gradient_check(X(be), ints(be, [0, 5, 1, 1]), dtype="float32", eps=1e-2)  # the loop skips checks
    bn = xpnet.BatchNormalization.create(3, backend=be)
    with pytest.raises(xpnet.ShapeError, match="BatchNormalization expects 3 features per sample, got 4"):
        bn.forward(X(be), train=True)
    with pytest.raises(xpnet.ConfigError, match="params must be a dict of arrays"):
        xpnet.SGD().update(list(model.params.values()), {})
    with pytest.raises(xpnet.ShapeError, match="non-empty batch"):
        xpnet.SoftmaxWithLoss().forward(be.asarray(np.zeros((0, 3))), ints(be, []))
    tally("hostile inputs", 11)


def test_relu_and_softplus_upload_no_scalar_to_a_torch_device(monkeypatch):
    """``maximum(x, 0.0)`` in array-api-compat's torch wrapper builds ``torch.asarray(0.0)`` per
    call: a blocking host-to-device copy on CUDA. The forms used make no such call."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    import array_api_compat.torch as xpt

    x = torch.linspace(-2, 2, 12).reshape(3, 4)
    calls = []
    real = torch.asarray
    monkeypatch.setattr(torch, "asarray", lambda *a, **k: calls.append(a) or real(*a, **k))
    y = xpnet.relu(x, xp=xpt)
    s = F.softplus(x, xp=xpt)
    layer = xpnet.ReLU()
    layer.forward(x)
    layer.backward(torch.ones_like(x))
    assert calls == []
    np.testing.assert_array_equal(y.numpy(), np.maximum(x.numpy(), 0))
    np.testing.assert_allclose(s.numpy(), np.logaddexp(0, x.numpy()), rtol=1e-6)
    assert torch.isnan(xpnet.relu(torch.tensor([float("nan")]), xp=xpt)).all()
