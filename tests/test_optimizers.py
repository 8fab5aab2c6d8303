"""Every optimizer against the textbook's update rule in NumPy float64, on every backend."""

import numpy as np
import pytest
import reference as ref
from conftest import assert_close

import xpnet

CASES = [
    ("sgd", xpnet.SGD, {}),
    ("momentum", xpnet.Momentum, {"momentum": 0.9}),
    ("nesterov", xpnet.Nesterov, {"momentum": 0.9}),
    ("adagrad", xpnet.AdaGrad, {}),
    ("rmsprop", xpnet.RMSprop, {"decay_rate": 0.99}),
    ("adam", xpnet.Adam, {}),
]


@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["plain", "decay"])
@pytest.mark.parametrize("name, cls, kw", CASES, ids=[c[0] for c in CASES])
def test_optimizer_matches_textbook_rule(be, rng, name, cls, kw, weight_decay):
    p0 = {"W1": rng.standard_normal((3, 2)), "b1": rng.standard_normal(2)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in p0.items()} for _ in range(4)]
    expected = {k: v.copy() for k, v in p0.items()}
    oracle = ref.Optim(name, 0.1, weight_decay)
    params = {k: be.asarray(v) for k, v in p0.items()}
    opt = cls(lr=0.1, weight_decay=weight_decay, **kw)
    for g in grads:
        oracle.update(expected, g)
        opt.update(params, {k: be.asarray(v) for k, v in g.items()})
    for k in p0:
        assert_close(params[k], expected[k], be)
    assert opt.state["step"] == 4


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_update_changes_the_weights_the_layers_use(be, rng, name):
    """On jax and dask ``p -= d`` would rebind a name and change nothing: the model must learn."""
    model = xpnet.mlp([4, 8, 3], seed=0, backend=be)
    x = be.asarray(rng.standard_normal((16, 4)))
    t = be.asarray(rng.integers(0, 3, 16))
    W_before = xpnet.to_numpy(model.layers[0].params["W"]).copy()
    before = xpnet.to_numpy(model.predict(x))
    opt = xpnet.get_optimizer(name, lr=0.05)
    losses = []
    for _ in range(5):  # a no-op update leaves the loss where it was; 5 steps lower it by a fifth or more on numpy
        losses.append(float(xpnet.to_numpy(model.loss(x, t))))
        model.backward()
        opt.update(model.params, model.grads)
    assert not np.allclose(xpnet.to_numpy(model.layers[0].params["W"]), W_before)
    assert not np.allclose(xpnet.to_numpy(model.predict(x)), before)
    assert losses[-1] < losses[0]
    assert xpnet.backend_name(model.params["W1"]) == be.name and model.params["W1"].dtype == be.dtype


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), "fast"])
def test_bad_learning_rate_is_refused(bad):
    with pytest.raises(xpnet.ConfigError, match="learning rate"):
        xpnet.SGD(lr=bad)


def test_unknown_optimizer_lists_the_valid_ones():
    with pytest.raises(xpnet.ConfigError, match="unknown optimizer 'adamw'.*sgd, momentum"):
        xpnet.get_optimizer("adamw")


def test_bad_momentum_and_weight_decay():
    with pytest.raises(xpnet.ConfigError, match="momentum"):
        xpnet.Momentum(momentum=1.5)
    with pytest.raises(xpnet.ConfigError, match="weight_decay"):
        xpnet.SGD(weight_decay=-1)
