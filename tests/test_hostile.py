"""Hostile inputs: every mistake gets an xpnet error that names what was expected and what was
given, on every backend; a property test throws random shapes, dtypes and values at the public
entry points and accepts only correct finite answers or xpnet's documented errors."""

import math

import numpy as np
import pytest
from conftest import tally
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpnet


@pytest.fixture
def model(be):
    return xpnet.mlp([4, 5, 3], seed=0, backend=be)


def X(be, shape=(2, 4), dtype=None):
    return be.asarray(np.ones(shape), dtype=dtype)


def labels(be, values):
    return be.asarray(np.array(values, dtype=np.int64))


BAD_LABELS = [
    ("out of range", lambda be: labels(be, [0, 3]), xpnet.LabelError,
     r"\[0, 2\] for 3 classes; got values from 0 to 3"),
    ("negative", lambda be: labels(be, [-1, 2]), xpnet.LabelError, r"got values from -1 to 2"),
    ("float labels", lambda be: be.asarray(np.array([0.0, 1.0])), xpnet.LabelError, r"float labels of shape \(2,\)"),
    ("one-hot rows not summing to 1", lambda be: be.asarray(np.array([[1.0, 1, 0], [0, 1, 0]])),
     xpnet.LabelError, "row 0 sums to 2"),
    ("one-hot of the wrong width", lambda be: be.asarray(np.eye(2)), xpnet.LabelError, r"shape \(N, 3\), got \(2, 2\)"),
    ("count differs from the batch", lambda be: labels(be, [0, 1, 2]), xpnet.LabelError,
     "3 labels given for a batch of 2"),
    ("boolean labels", lambda be: be.asarray(np.array([True, False])), xpnet.LabelError, "boolean labels"),
]


@pytest.mark.parametrize("case, make, error, message", BAD_LABELS, ids=[c[0] for c in BAD_LABELS])
def test_bad_labels_are_named(be, model, case, make, error, message):
    with pytest.raises(error, match=message):
        model.loss(X(be), make(be))
    tally("hostile inputs", 1)


BAD_INPUTS = [
    ("wrong number of features", lambda be: X(be, (2, 5)), xpnet.ShapeError, "4 input features per sample, got 5"),
    ("wrong rank", lambda be: X(be, (4,)), xpnet.ShapeError, r"shape \(N, features...\), got shape \(4,\)"),
    ("empty batch", lambda be: X(be, (0, 4)), xpnet.ShapeError, r"non-empty batch.*\(0, 4\)"),
    ("integer features", lambda be: be.asarray(np.ones((2, 4), dtype=np.int64)), xpnet.DTypeError,
     "floating-point features.*got dtype int64"),
    ("boolean features", lambda be: be.asarray(np.ones((2, 4), dtype=bool)), xpnet.DTypeError, "got dtype bool"),
    ("NaN in the input", lambda be: be.asarray(np.array([[1.0, np.nan, 0, 0], [0, 0, 0, 0]])),
     xpnet.NonFiniteError, r"1 NaN or inf value\(s\)"),
    ("inf in the input", lambda be: be.asarray(np.array([[1.0, np.inf, -np.inf, 0], [0, 0, 0, 0]])),
     xpnet.NonFiniteError, r"2 NaN or inf value\(s\)"),
]


@pytest.mark.parametrize("case, make, error, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_are_named(be, model, case, make, error, message):
    with pytest.raises(error, match=message):
        model.predict(make(be))
    tally("hostile inputs", 1)


def test_array_from_another_device_is_named(rng):
    """array_api_strict's simulated devices catch a forgotten device= with no GPU."""
    pytest.importorskip("array_api_strict", reason="array_api_strict not installed")
    on1 = xpnet.get_backend("array_api_strict", device="device1", dtype="float32")
    on_cpu = xpnet.get_backend("array_api_strict", dtype="float32")
    model = xpnet.mlp([4, 3], backend=on1)
    with pytest.raises(xpnet.BackendMismatchError, match="on device.*device1.*got a array_api_strict array"):
        model.predict(on_cpu.asarray(rng.standard_normal((2, 4))))
    tally("hostile inputs", 1)


@pytest.mark.parametrize("batch_size, message", [
    (0, "batch_size must be a positive integer, got 0"),
    (-3, "batch_size must be a positive integer, got -3"),
    (2.5, "batch_size must be a positive integer, got 2.5"),
    (11, "batch_size 11 is larger than the dataset's 10 samples; use a batch_size of at most 10"),
])
def test_bad_batch_sizes_are_named(be, batch_size, message):
    from xpnet.data import Loader

    with pytest.raises(xpnet.ConfigError, match=message):
        Loader(X(be, (10, 4)), labels(be, [0] * 10), batch_size=batch_size)
    tally("hostile inputs", 1)


def test_empty_dataset_and_label_count_are_named(be):
    from xpnet.data import Loader

    with pytest.raises(xpnet.ShapeError, match="the dataset is empty"):
        Loader(X(be, (0, 4)), labels(be, []), batch_size=1)
    with pytest.raises(xpnet.ShapeError, match="10 samples but 9 labels"):
        Loader(X(be, (10, 4)), labels(be, [0] * 9), batch_size=2)
    tally("hostile inputs", 2)


@pytest.mark.parametrize("lr", [0, -1, float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_bad_learning_rates(name, lr):
    with pytest.raises(xpnet.ConfigError, match=rf"learning rate \(lr\) must be a finite number > 0, got {lr}"):
        xpnet.get_optimizer(name, lr=lr)
    tally("hostile inputs", 1)


@pytest.mark.parametrize("call, message", [
    (lambda: xpnet.get_optimizer("adamw"), "unknown optimizer 'adamw'; valid optimizers: sgd"),
    (lambda: xpnet.mlp([4, 3], activation="swish"), "unknown activation 'swish'; valid activations: relu"),
    (lambda: xpnet.mlp([4, 3], loss="hinge"), "unknown loss 'hinge'; valid losses: softmax"),
    (lambda: xpnet.get_backend("tensorflow"), "unknown backend 'tensorflow'; valid backends: numpy"),
])
def test_unknown_names_list_the_valid_ones(call, message):
    with pytest.raises(xpnet.XPNetError, match=message):
        call()
    tally("hostile inputs", 1)


@pytest.mark.parametrize("big", [1e4, -1e4])
def test_huge_logits_stay_finite_and_probabilities_sum_to_one(be, big):
    s = np.array([[big, 0.0, -big], [big, big, big], [-big, 1.0, big]])
    layer = xpnet.SoftmaxWithLoss()
    loss = float(xpnet.to_numpy(layer.forward(be.asarray(s), labels(be, [2, 0, 1]))))
    grad = xpnet.to_numpy(layer.backward())
    p = xpnet.to_numpy(xpnet.softmax(be.asarray(s)))
    assert math.isfinite(loss) and np.isfinite(grad).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    sig = xpnet.SigmoidWithLoss()
    sl = float(xpnet.to_numpy(sig.forward(be.asarray(s), be.asarray((s > 0) * 1.0))))
    assert math.isfinite(sl) and np.isfinite(xpnet.to_numpy(sig.backward())).all()


# ------------------------------------------------------------------ property-based
FLOATS = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32)
ODD = st.sampled_from([0.0, np.nan, np.inf, -np.inf, 1e30, -1e30])


@st.composite
def scores_and_targets(draw):
    n = draw(st.integers(0, 5))
    c = draw(st.integers(1, 5))
    kind = draw(st.sampled_from(["int", "onehot", "float1d", "bool"]))
    s = np.array(draw(st.lists(FLOATS, min_size=n * c, max_size=n * c)), dtype=np.float64).reshape(n, c)
    if draw(st.booleans()) and s.size:
        s.flat[draw(st.integers(0, s.size - 1))] = draw(ODD)
    lo, hi = draw(st.integers(-2, 0)), draw(st.integers(c - 1, c + 1))
    t_int = np.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)), dtype=np.int64)
    if draw(st.booleans()) and n:  # sometimes one label too many or too few
        t_int = t_int[:-1] if draw(st.booleans()) else np.append(t_int, 0)
    if kind == "int":
        t = t_int
    elif kind == "onehot":
        t = np.zeros((t_int.size, c))
        ok = (t_int >= 0) & (t_int < c)
        t[np.arange(t_int.size)[ok], t_int[ok]] = 1.0
    elif kind == "float1d":
        t = t_int.astype(np.float64)
    else:
        t = t_int > 0
    return s, t


def _agrees_or_documented(fn, expected_fn):
    try:
        out = fn()
    except xpnet.XPNetError:
        return "refused"
    got = np.asarray(xpnet.to_numpy(out), dtype=np.float64)
    expected = expected_fn()
    assert np.isfinite(got).all(), got
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4)
    return "answered"


def _stable_cross_entropy(s, t_int):
    m = s.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))[:, 0]
    return np.mean(lse - s[np.arange(len(t_int)), t_int])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=scores_and_targets())
def test_property_cross_entropy_answers_right_or_refuses(be, data):
    s, t = data
    n, c = s.shape
    valid = (
        n > 0 and np.isfinite(s).all() and t.shape[:1] == (n,)
        and ((t.dtype.kind == "i" and t.min() >= 0 and t.max() < c)
             or (t.ndim == 2 and t.dtype.kind == "f" and np.allclose(t.sum(axis=1), 1.0)))
    )
    outcome = _agrees_or_documented(
        lambda: xpnet.cross_entropy(be.asarray(s), be.asarray(t)),
        lambda: _stable_cross_entropy(s, t if t.ndim == 1 else t.argmax(axis=1)),
    )
    assert (outcome == "answered") == valid, (s, t, outcome)
    tally("hostile inputs", 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    dtype=st.sampled_from(["float32", "float64", "int64", "bool"]),
    fill=st.one_of(FLOATS, ODD),
)
def test_property_model_predict_answers_right_or_refuses(be, shape, dtype, fill):
    model = xpnet.mlp([4, 3], seed=0, backend=be)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN -> int is garbage, and refused
        host = np.full(shape, fill).astype(dtype)
    try:
        x = be.asarray(host, dtype=getattr(be.xp, dtype) if dtype.startswith("float") else None)
    except (ValueError, TypeError):
        return  # this device cannot hold that dtype at all (no_float64): nothing to call
    W, b = (xpnet.to_numpy(model.params[k]).astype(np.float64) for k in ("W1", "b1"))
    outcome = _agrees_or_documented(
        lambda: model.predict(x),
        lambda: host.reshape(host.shape[0], -1).astype(np.float64) @ W + b,
    )
    ok_input = (len(shape) >= 2 and shape[0] > 0 and int(np.prod(shape[1:])) == 4
                and dtype.startswith("float") and np.isfinite(host.astype(np.float64)).all()
                and np.isfinite(host.astype(be.dtype_name)).all())
    assert (outcome == "answered") == ok_input, (shape, dtype, fill, outcome)
    tally("hostile inputs", 1)
