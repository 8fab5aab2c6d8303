"""A compiled step never runs with a stale value: whatever it reads besides its array inputs
(every optimizer hyper-parameter, every layer and its settings, the loss layer) is part of what
decides a recompile (jax) or a new capture (CUDA graphs), so a change between calls gives the
numbers eager gives (float64, 1e-10), or a clear error where eager refuses too.

The CUDA-graph step is checked through the CPU stand-in graph of tests/test_graphs.py.
"""

import importlib.util
import inspect

import numpy as np
import pytest
from conftest import tally
from test_graphs import HostGraph

import xpnet
from xpnet import compile as XC
from xpnet.errors import ConfigError
from xpnet.optimizers import OPTIMIZERS
from xpnet.train import evaluate

HAS_JAX = importlib.util.find_spec("jax") is not None
# many tests here compile the very same program before their change (one per optimizer and form)
pytestmark = pytest.mark.usefixtures("shared_jax_executables")
# a valid value other than the default, for every hyper-parameter any optimizer has
NEW_VALUE = {"lr": 0.02, "weight_decay": 0.01, "eps": 1e-2, "momentum": 0.5, "decay_rate": 0.9,
             "beta1": 0.5, "beta2": 0.9, "clip_norm": 0.05}
CASES = [(name, hyper) for name, cls in OPTIMIZERS.items() for hyper in cls.hyper]


def jax64():
    if not HAS_JAX:
        pytest.skip("jax is not installed (pip install 'xpnet[jax]')")
    return xpnet.get_backend("jax", dtype="float64")


def host64():
    return xpnet.get_backend("numpy", dtype="float64")


def data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)), rng.integers(0, 3, n)


def twins(be, optimizer="adam", **layers):
    """Two equal models and optimizers: one for the compiled step, one for eager."""
    make = lambda: xpnet.mlp([6, 8, 8, 3], seed=1, backend=be, **layers)
    return make(), xpnet.get_optimizer(optimizer, 0.05), make(), xpnet.get_optimizer(optimizer, 0.05)


def eager_step(model, opt, x, t):
    model.loss(x, t, train=True, check=False)
    model.backward(input_grad=False)
    opt.update(model.params, model.grads)


def same(m1, o1, m2, o2, tol=1e-10):
    for k in m2.params:
        np.testing.assert_allclose(xpnet.to_numpy(m1.params[k]), xpnet.to_numpy(m2.params[k]), rtol=tol,
                                   atol=tol, err_msg=k)
    for k in m2.state:
        np.testing.assert_allclose(xpnet.to_numpy(m1.state[k]), xpnet.to_numpy(m2.state[k]), rtol=tol,
                                   atol=tol, err_msg=k)
    for s in o2.slots:
        for k in o2.state[s]:
            np.testing.assert_allclose(xpnet.to_numpy(o1.state[s][k]), xpnet.to_numpy(o2.state[s][k]), rtol=tol,
                                       atol=tol, err_msg=f"{s}[{k}]")
    assert o1.state["step"] == o2.state["step"]


def compiled_calls(step, be, x, t, form, size=10):
    """Three steps on ``(x, t)`` through the compiled step, in ``form``; returns the batches
    taken, for the eager twin."""
    order = np.arange(3 * size)
    xs, ts = be.asarray(x[: 3 * size]), be.asarray(t[: 3 * size])
    if form == "epoch":
        step.epoch(xs, ts, order, size)
    elif form == "run":
        step.run(be.asarray(x[: 3 * size].reshape(3, size, -1)), be.asarray(t[: 3 * size].reshape(3, size)))
    for i in range(3):
        xb, tb = be.asarray(x[i * size:(i + 1) * size]), be.asarray(t[i * size:(i + 1) * size])
        if form == "step":
            step(xb, tb)
        elif form == "gradient+apply":
            _, grads = step.gradient(xb, tb)
            step.apply(grads)
    return [(be.asarray(x[i * size:(i + 1) * size]), be.asarray(t[i * size:(i + 1) * size])) for i in range(3)]


def test_every_constructor_argument_of_every_optimizer_is_a_listed_hyperparameter():
    for name, cls in OPTIMIZERS.items():
        assert set(cls.hyper) == set(inspect.signature(cls).parameters), name
        # clip_norm is left out while 0 (off), so unclipped checkpoints are as before; once set it is there
        assert set(cls().config()) == set(cls.hyper) - {"clip_norm"}, name
        assert set(cls(clip_norm=1.0).config()) == set(cls.hyper), name
        assert set(cls.hyper) <= set(NEW_VALUE), name


@pytest.mark.parametrize("form", ["step", "epoch", "run", "gradient+apply"])
@pytest.mark.parametrize("optimizer, hyper", CASES, ids=[f"{o}-{h}" for o, h in CASES])
def test_a_hyperparameter_changed_between_compiled_calls_is_used_jax(optimizer, hyper, form):
    be = jax64()
    mc, oc, me, oe = twins(be, optimizer)
    step = XC.compile_step(mc, oc)
    x, t = data()
    for round_ in range(2):
        for xb, tb in compiled_calls(step, be, x[30 * round_:], t[30 * round_:], form):
            eager_step(me, oe, xb, tb)
        setattr(oc, hyper, NEW_VALUE[hyper])
        setattr(oe, hyper, NEW_VALUE[hyper])
    same(mc, oc, me, oe)
    tally("hostile inputs")


@pytest.mark.parametrize("optimizer, hyper", CASES, ids=[f"{o}-{h}" for o, h in CASES])
def test_a_hyperparameter_changed_between_replays_is_used_cuda_graph_stand_in(optimizer, hyper):
    be = host64()
    mc, oc, me, oe = twins(be, optimizer)
    step = XC.GraphStep(mc, oc, HostGraph, "test")
    x, t = data()
    for round_ in range(2):
        for xb, tb in compiled_calls(step, be, x[30 * round_:], t[30 * round_:], "step"):
            eager_step(me, oe, xb, tb)
        setattr(oc, hyper, NEW_VALUE[hyper])
        setattr(oe, hyper, NEW_VALUE[hyper])
    same(mc, oc, me, oe)
    # the stand-in replays the Python body, so the count shows a real graph would be captured again
    assert step.compiles == (1 if hyper == "lr" else 2)
    tally("hostile inputs")


def _dropout(model):
    return next(layer for layer in model.layers if isinstance(layer, xpnet.Dropout))


def _bn(model):
    return next(layer for layer in model.layers if isinstance(layer, xpnet.BatchNormalization))


def _set_ratio(model):
    _dropout(model).ratio = 0.6


def _set_bn(model):
    _bn(model).momentum, _bn(model).eps = 0.5, 1e-3


def _swap_activation(model):
    i = next(i for i, layer in enumerate(model.layers) if isinstance(layer, xpnet.ReLU))
    model.layers[i] = xpnet.Tanh()


def _insert_dropout(model):
    model.layers.insert(2, xpnet.Dropout(0.3, rng=7))


def _swap_loss(model):
    model.loss_layer = xpnet.SigmoidWithLoss()


CHANGES = {"dropout-ratio": _set_ratio, "batchnorm-settings": _set_bn, "activation-replaced": _swap_activation,
           "dropout-inserted": _insert_dropout, "loss-replaced": _swap_loss}


def _run_change(be, make_step, change, form):
    mc, oc, me, oe = twins(be, "adam", batchnorm=True, dropout=0.2)
    step = make_step(mc, oc)
    x, t = data()
    if change == "loss-replaced":  # sigmoid targets: one 0/1 column per output
        t = np.eye(3)[t]
    for round_ in range(2):
        for xb, tb in compiled_calls(step, be, x[30 * round_:], t[30 * round_:], form):
            eager_step(me, oe, xb, tb)
        if round_ == 0:
            CHANGES[change](mc)
            CHANGES[change](me)
    same(mc, oc, me, oe)
    xs, ts = be.asarray(x), be.asarray(t)
    got = [float(xpnet.to_numpy(v)) for v in step.evaluate(evaluate, xs, ts)]
    want = [float(xpnet.to_numpy(v)) for v in evaluate(me, xs, ts)]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    tally("hostile inputs")
    return step


@pytest.mark.parametrize("form", ["step", "epoch", "gradient+apply"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_model_changed_between_compiled_calls_is_used_jax(change, form):
    _run_change(jax64(), XC.compile_step, change, form)


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_model_changed_between_replays_is_used_cuda_graph_stand_in(change):
    step = _run_change(host64(), lambda m, o: XC.GraphStep(m, o, HostGraph, "test"), change, "step")
    assert step.compiles == 2  # captured again after the change (the stand-in replays Python)


def test_a_changed_dropout_ratio_is_seen_by_the_compiled_evaluation_jax():
    be = jax64()
    model = xpnet.mlp([6, 8, 3], dropout=0.5, seed=1, backend=be)
    step = XC.compile_step(model, xpnet.SGD(0.1))
    x, t = data()
    xs, ts = be.asarray(x), be.asarray(t)
    before = float(xpnet.to_numpy(step.evaluate(evaluate, xs, ts)[0]))
    _dropout(model).ratio = 0.1
    after = float(xpnet.to_numpy(step.evaluate(evaluate, xs, ts)[0]))
    want = float(xpnet.to_numpy(evaluate(model, xs, ts)[0]))
    assert after == pytest.approx(want, rel=1e-12) and after != pytest.approx(before, rel=1e-6)


@pytest.mark.parametrize("kind", ["jax", "graph"])
def test_a_layer_with_new_weights_is_refused_as_eager_refuses_it(kind):
    """An Affine replaced by a fresh one: the optimizer's state belongs to the old weights, so
    eager refuses the update; the compiled step refuses it the same way, before any step."""
    be = jax64() if kind == "jax" else host64()
    mc, oc, me, oe = twins(be, "adam")
    step = XC.compile_step(mc, oc) if kind == "jax" else XC.GraphStep(mc, oc, HostGraph, "test")
    x, t = data()
    xb, tb = be.asarray(x[:10]), be.asarray(t[:10])
    step(xb, tb)
    eager_step(me, oe, xb, tb)
    for model in (mc, me):
        model.layers[0] = xpnet.Affine.create(6, 8, rng=5, backend=be)
    with pytest.raises(ConfigError, match="create a new optimizer|Create one optimizer"):
        eager_step(me, oe, xb, tb)
    with pytest.raises(ConfigError, match="create a new optimizer|Create one optimizer"):
        step(xb, tb)
    tally("hostile inputs", 2)


@pytest.mark.parametrize("kind", ["jax", "graph"])
def test_two_layers_sharing_one_array_is_a_clear_error_under_a_compiled_step(kind):
    be = jax64() if kind == "jax" else host64()
    W = be.asarray(np.random.default_rng(0).standard_normal((6, 6)))
    model = xpnet.Sequential([xpnet.Affine(W, be.zeros((6,))), xpnet.ReLU(), xpnet.Affine(W, be.zeros((6,)))])
    opt = xpnet.SGD(0.1)
    step = XC.compile_step(model, opt) if kind == "jax" else XC.GraphStep(model, opt, HostGraph, "test")
    x, t = data()
    with pytest.raises(ConfigError, match="W1 and W2 are one array"):
        step(be.asarray(x[:10]), be.asarray(t[:10]))
    tally("hostile inputs")
