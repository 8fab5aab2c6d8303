"""One step interface: the eager, jax and CUDA-graph steps all offer ``step``, ``run``, ``epoch``,
``gradient``/``apply``, ``evaluate`` and ``copy``, each leaving the model and the optimizer as the
textbook's eager step does (float64, 1e-10), so the trainer never asks which one it holds."""

import importlib.util

import numpy as np
import pytest
from test_graphs import HostGraph

import xpnet
from xpnet import compile as XC
from xpnet.train import evaluate

KINDS = ["eager", "graph"] + (["jax"] if importlib.util.find_spec("jax") else [])


def make(kind):
    be = xpnet.get_backend("jax" if kind == "jax" else "numpy", dtype="float64")
    models = [xpnet.mlp([6, 8, 3], seed=1, backend=be, dropout=0.2) for _ in range(2)]
    opts = [xpnet.Adam(lr=0.01) for _ in range(2)]
    if kind == "eager":
        step = XC.EagerStep(models[0], opts[0])
    elif kind == "graph":
        step = XC.GraphStep(models[0], opts[0], HostGraph, "test")
    else:
        step = XC.compile_step(models[0], opts[0])
    return be, step, models[1], opts[1]


def data(be, n=50):
    rng = np.random.default_rng(0)
    return be.asarray(rng.standard_normal((n, 6))), be.asarray(rng.integers(0, 3, n))


def eager(model, opt, x, t):
    loss = model.loss(x, t, train=True, check=False)
    model.backward(input_grad=False)
    opt.update(model.params, model.grads)
    return float(xpnet.to_numpy(loss))


def same(step, model, opt):
    for k in model.params:
        np.testing.assert_allclose(xpnet.to_numpy(step.model.params[k]), xpnet.to_numpy(model.params[k]),
                                   rtol=1e-10, atol=1e-12, err_msg=k)
    assert step.optimizer.state["step"] == opt.state["step"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_step_kind_is_a_step_with_every_call(kind):
    _, step, _, _ = make(kind)
    assert isinstance(step, XC.Step)
    for name in ("__call__", "run", "epoch", "gradient", "apply", "evaluate", "copy"):
        assert callable(getattr(step, name)), name
    assert isinstance(step.compiled, bool) and isinstance(step.splits, bool) and isinstance(step.reason, str)


@pytest.mark.parametrize("kind", KINDS)
def test_epoch_is_the_batches_in_the_given_order(kind):
    be, step, model, opt = make(kind)
    x, t = data(be)
    order = np.random.default_rng(3).permutation(50)
    seen = []
    losses, mean = step.epoch(x, t, order, 16, after_step=lambda: seen.append(1))
    want = []
    for lo in range(0, 50, 16):
        idx = be.asarray(order[lo:lo + 16])
        want.append(eager(model, opt, be.xp.take(x, idx, axis=0), be.xp.take(t, idx, axis=0)))
    np.testing.assert_allclose(xpnet.to_numpy(losses), want, rtol=1e-10)
    sizes = [16, 16, 16, 2]
    assert float(xpnet.to_numpy(mean)) == pytest.approx(np.dot(want, sizes) / 50, rel=1e-10)
    assert len(seen) == (1 if kind == "jax" else 4)  # after each step, or after the one compiled call
    same(step, model, opt)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_then_apply_is_one_step_and_run_is_steps(kind):
    be, step, model, opt = make(kind)
    x, t = data(be, 30)
    for i in range(3):
        xb, tb = x[i * 10:(i + 1) * 10, ...], t[i * 10:(i + 1) * 10]
        loss, grads = step.gradient(xb, tb)
        step.apply(grads)
        assert float(xpnet.to_numpy(loss)) == pytest.approx(eager(model, opt, xb, tb), rel=1e-10)
    same(step, model, opt)
    losses = step.run(be.xp.reshape(x, (3, 10, 6)), be.xp.reshape(t, (3, 10)))
    want = [eager(model, opt, x[i * 10:(i + 1) * 10, ...], t[i * 10:(i + 1) * 10]) for i in range(3)]
    np.testing.assert_allclose(xpnet.to_numpy(losses), want, rtol=1e-10)
    same(step, model, opt)


@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_and_copy(kind):
    be, step, model, opt = make(kind)
    x, t = data(be)
    got = [float(xpnet.to_numpy(v)) for v in step.evaluate(evaluate, x, t)]
    want = [float(xpnet.to_numpy(v)) for v in evaluate(model, x, t)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    params = dict(step.model.params.items())
    copied = step.copy(params)
    assert copied is not params and set(copied) == set(params)
    empty = {}
    assert step.copy(empty) is not empty  # never the caller's dict (it may be filled later)
