"""Compiled steps: the unchanged layers traced by jax.jit / lax.scan give the eager numbers, keep
dropout masks fresh and equal to eager's, leave no tracer behind, and compose with the trainer
(NaN guard, Ctrl-C, resume, checkpoints); elsewhere the eager step is returned, never an error."""

import warnings

import numpy as np
import pytest
from conftest import tally

import xpnet
from xpnet import checkpoint as C
from xpnet import cli, datasets
from xpnet.errors import BackendMismatchError, ConfigError, NonFiniteError
from xpnet.train import Trainer, build

jax = pytest.importorskip("jax", reason="jax is not installed (pip install 'xpnet[jax]')")


def backends():
    return xpnet.get_backend("jax", dtype="float64"), xpnet.get_backend("numpy", dtype="float64")


def model_on(be, **kw):
    return xpnet.mlp([6, 8, 8, 3], seed=1, backend=be, **kw)


def eager_step(model, opt, x, t):
    opt.update(model.params, model.gradient(x, t, check=False))


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)), rng.integers(0, 3, n)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("layers", [{}, {"batchnorm": True}, {"dropout": 0.3}, {"batchnorm": True, "dropout": 0.2}],
                         ids=["plain", "batchnorm", "dropout", "both"])
def test_compiled_steps_match_eager_float64(optimizer, layers):
    bj, bn = backends()
    mj, mn = model_on(bj, **layers), model_on(bn, **layers)
    oj, on = xpnet.get_optimizer(optimizer, 0.05), xpnet.get_optimizer(optimizer, 0.05)
    step = xpnet.compile_step(mj, oj)
    assert step.compiled
    x, t = data(200)
    for i in range(10):  # 10 single compiled steps ...
        xb, tb = x[i * 10:(i + 1) * 10], t[i * 10:(i + 1) * 10]
        step(bj.asarray(xb), bj.asarray(tb))
        eager_step(mn, on, bn.asarray(xb), bn.asarray(tb))
    losses = step.run(bj.asarray(x[100:200].reshape(10, 10, 6)), bj.asarray(t[100:200].reshape(10, 10)))
    eager_losses = []
    for i in range(10, 20):  # ... then 10 in one lax.scan
        xb, tb = bn.asarray(x[i * 10:(i + 1) * 10]), bn.asarray(t[i * 10:(i + 1) * 10])
        eager_losses.append(float(mn.loss(xb, tb, check=False)))
        mn.backward(input_grad=False)
        on.update(mn.params, mn.grads)
    np.testing.assert_allclose(xpnet.to_numpy(losses), eager_losses, rtol=1e-10, atol=1e-10)
    for k in mn.params:
        np.testing.assert_allclose(xpnet.to_numpy(mj.params[k]), mn.params[k], rtol=1e-10, atol=1e-10, err_msg=k)
    for k in mn.state:
        np.testing.assert_allclose(xpnet.to_numpy(mj.state[k]), mn.state[k], rtol=1e-10, atol=1e-10, err_msg=k)
    for slot in on.slots:
        for k in mn.params:
            np.testing.assert_allclose(xpnet.to_numpy(oj.state[slot][k]), on.state[slot][k], rtol=1e-10, atol=1e-10)
    assert oj.state["step"] == on.state["step"] == 20 and isinstance(oj.state["step"], int)


def test_dropout_masks_change_every_step_and_equal_eager_ones():
    bj, bn = backends()
    mj, mn = model_on(bj, dropout=0.5), model_on(bn, dropout=0.5)
    step = xpnet.compile_step(mj, xpnet.SGD(lr=1e-3))
    x, t = data(10)
    drop_j = [layer for layer in mj.layers if isinstance(layer, xpnet.Dropout)]
    drop_n = [layer for layer in mn.layers if isinstance(layer, xpnet.Dropout)]
    masks = []
    for _ in range(3):
        step(bj.asarray(x), bj.asarray(t))
        mn.loss(bn.asarray(x), bn.asarray(t), check=False)
        masks.append(drop_n[0].mask.copy())
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])
    for dj, dn in zip(drop_j, drop_n):  # the compiled run drew exactly the eager draws
        assert dj.rng.bit_generator.state == dn.rng.bit_generator.state


def test_no_tracer_is_left_in_the_model_and_the_eager_path_keeps_working(tmp_path):
    bj, _ = backends()
    model = model_on(bj, batchnorm=True, dropout=0.2)
    opt = xpnet.Adam(lr=0.01)
    step = xpnet.compile_step(model, opt)
    x, t = data(20)
    step(bj.asarray(x), bj.asarray(t))
    objects = [*model.layers, model.loss_layer, opt]
    for obj in objects:
        for name, value in vars(obj).items():
            assert not isinstance(value, jax.core.Tracer), (obj, name)
    for k, v in [*model.params.items(), *model.state.items()]:
        assert isinstance(v, jax.Array) and not isinstance(v, jax.core.Tracer) and not v.is_deleted(), k
    grads = model.gradient(bj.asarray(x), bj.asarray(t))  # eager, checked
    opt.update(model.params, grads)
    C.save(tmp_path / "c.npz", model, opt)
    loaded, lopt, _ = C.load(tmp_path / "c.npz", backend="numpy")
    np.testing.assert_allclose(loaded.predict(xpnet.to_backend(bj.asarray(x), "numpy")),
                               xpnet.to_numpy(model.predict(bj.asarray(x))), rtol=1e-12)


def test_a_new_learning_rate_or_a_last_smaller_batch_does_not_recompile_each_step():
    bj, _ = backends()
    model, opt = model_on(bj), xpnet.SGD(lr=0.1)
    step = xpnet.compile_step(model, opt)
    x, t = data(25)
    for lr in (0.1, 0.05, 0.01):
        opt.lr = lr
        for i in range(0, 25, 10):  # batches of 10, 10, 5
            step(bj.asarray(x[i:i + 10]), bj.asarray(t[i:i + 10]))
    assert step.compiles == 2  # one per batch shape


def test_backends_without_a_compiler_get_the_eager_step_with_a_warning(be):
    model, opt = xpnet.mlp([4, 3], backend=be), xpnet.SGD(lr=0.1)
    if be.name == "jax":
        assert xpnet.compile_step(model, opt).compiled
        return
    with pytest.warns(RuntimeWarning, match="no compiler is used"):
        step = xpnet.compile_step(model, opt)
    assert not step.compiled and "eagerly" in step.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = xpnet.compile_step(model, opt, warn=False)
    x = be.asarray(np.ones((2, 4)))
    t = be.asarray(np.array([0, 2]))
    before = xpnet.to_numpy(model.params["W1"]).copy()
    loss = quiet(x, t)
    assert np.isfinite(float(xpnet.to_numpy(loss))) and not np.array_equal(before, xpnet.to_numpy(model.params["W1"]))


def test_bad_input_to_compile_step_gets_xpnet_errors():
    bj, bn = backends()
    with pytest.raises(ConfigError, match="needs a model with parameters"):
        xpnet.compile_step(xpnet.Sequential([xpnet.ReLU()]), xpnet.SGD(lr=0.1))
    with pytest.raises(ConfigError, match="needs an xpnet optimizer"):
        xpnet.compile_step(model_on(bj), "sgd")
    step = xpnet.compile_step(model_on(bj), xpnet.SGD(lr=0.1))
    x, t = data(4)
    with pytest.raises(BackendMismatchError, match="compiled step input"):
        step(bn.asarray(x), bj.asarray(t))
    tally("hostile inputs", 3)


@pytest.mark.parametrize("call", ["step", "run", "epoch", "evaluate"])
def test_an_optimizer_of_another_model_is_refused_before_its_state_changes(call):
    bj, _ = backends()
    other, model = xpnet.mlp([6, 8, 3], seed=2, backend=bj), model_on(bj)  # W1..b2, and W1..b3
    opt = xpnet.Adam(lr=0.01)
    x, t = data(10)
    opt.update(other.params, other.gradient(bj.asarray(x), bj.asarray(t)))
    keys = sorted(opt.state["m"])
    step = xpnet.compile_step(model, opt)
    X, T = bj.asarray(x), bj.asarray(t)
    calls = {"step": lambda: step(X, T), "run": lambda: step.run(X[None, ...], T[None, ...]),
             "epoch": lambda: step.epoch(X, T, np.arange(10), 5),
             "evaluate": lambda: step.evaluate(lambda m, a: m.predict(a, train=False), X)}
    with pytest.raises(ConfigError, match="already updates another model's parameters"):
        calls[call]()
    assert sorted(opt.state["m"]) == keys and sorted(opt.state["v"]) == keys and opt.state["step"] == 1
    tally("hostile inputs", 1)


# ------------------------------------------------------------------ the step in two halves
def assert_same_model(got_model, got_opt, want_model, want_opt, tol=1e-10):
    for mapping, want in ((got_model.params, want_model.params), (got_model.state, want_model.state)):
        for k in want:
            np.testing.assert_allclose(xpnet.to_numpy(mapping[k]), xpnet.to_numpy(want[k]), rtol=tol, atol=tol,
                                       err_msg=k)
    for slot in want_opt.slots:
        for k in want_model.params:
            np.testing.assert_allclose(xpnet.to_numpy(got_opt.state[slot][k]), xpnet.to_numpy(want_opt.state[slot][k]),
                                       rtol=tol, atol=tol, err_msg=f"{slot} {k}")
    assert got_opt.state["step"] == want_opt.state["step"] and isinstance(got_opt.state["step"], int)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("layers", [{}, {"batchnorm": True}, {"dropout": 0.3}, {"batchnorm": True, "dropout": 0.2}],
                         ids=["plain", "batchnorm", "dropout", "both"])
def test_gradient_then_apply_equals_the_step_and_eager_float64(optimizer, layers):
    bj, bn = backends()
    halves, whole, eager = model_on(bj, **layers), model_on(bj, **layers), model_on(bn, **layers)
    oh, ow, oe = (xpnet.get_optimizer(optimizer, 0.05) for _ in range(3))
    split, step = xpnet.compile_step(halves, oh), xpnet.compile_step(whole, ow)
    x, t = data(125)
    for i in range(0, 125, 10):  # 12 batches of 10 and a last one of 5
        xb, tb = x[i:i + 10], t[i:i + 10]
        loss, grads = split.gradient(bj.asarray(xb), bj.asarray(tb))
        assert list(grads) == list(halves.params) and isinstance(loss, jax.Array) and loss.ndim == 0
        assert all(not isinstance(g, jax.core.Tracer) for g in grads.values())
        want_loss = float(eager.loss(bn.asarray(xb), bn.asarray(tb), check=False))  # before the update
        eager.backward(input_grad=False)
        want_grads = eager.grads
        assert float(loss) == pytest.approx(want_loss, rel=1e-10)
        for k, g in want_grads.items():
            np.testing.assert_allclose(xpnet.to_numpy(grads[k]), g, rtol=1e-10, atol=1e-10, err_msg=k)
        split.apply(grads)
        step(bj.asarray(xb), bj.asarray(tb))
        oe.update(eager.params, want_grads)
    assert_same_model(halves, oh, whole, ow)
    assert_same_model(halves, oh, eager, oe)
    for dh, de in zip(*([la for la in m.layers if isinstance(la, xpnet.Dropout)] for m in (halves, eager))):
        assert dh.rng.bit_generator.state == de.rng.bit_generator.state  # the eager draws, in order
    assert split.compiles == 3  # gradient for 10 and for 5 samples, one apply


def test_apply_takes_a_new_learning_rate_without_recompiling_and_leaves_no_tracer(tmp_path):
    bj, bn = backends()
    model, opt = model_on(bj, batchnorm=True, dropout=0.2), xpnet.Adam(lr=0.01)
    ref, ref_opt = model_on(bn, batchnorm=True, dropout=0.2), xpnet.Adam(lr=0.01)
    step = xpnet.compile_step(model, opt)
    x, t = data(20)
    for lr in (0.01, 0.003, 0.02):
        opt.lr = ref_opt.lr = lr
        _, grads = step.gradient(bj.asarray(x), bj.asarray(t))
        step.apply(grads)
        ref_opt.update(ref.params, ref.gradient(bn.asarray(x), bn.asarray(t), check=False))
    assert step.compiles == 2  # one gradient, one apply: the learning rate is an input
    assert_same_model(model, opt, ref, ref_opt)
    for obj in [*model.layers, model.loss_layer, opt]:
        for name, value in vars(obj).items():
            assert not isinstance(value, jax.core.Tracer), (obj, name)
            for item in value.values() if isinstance(value, dict) else ():
                assert not any(isinstance(i, jax.core.Tracer) for i in (item if isinstance(item, tuple) else (item,)))
    for k, v in [*model.params.items(), *model.state.items(), *opt.state["m"].items()]:
        assert isinstance(v, jax.Array) and not isinstance(v, jax.core.Tracer) and not v.is_deleted(), k
    grads = model.gradient(bj.asarray(x), bj.asarray(t))  # the eager path, checked, still works
    opt.update(model.params, grads)
    C.save(tmp_path / "c.npz", model, opt)
    assert C.load(tmp_path / "c.npz", backend="numpy")[1].state["step"] == 4


def test_apply_refuses_bad_gradients_before_anything_changes():
    bj, bn = backends()
    model, opt = model_on(bj), xpnet.Momentum(lr=0.1)
    step = xpnet.compile_step(model, opt)
    x, t = data(10)
    _, grads = step.gradient(bj.asarray(x), bj.asarray(t))
    before = {k: xpnet.to_numpy(v).copy() for k, v in model.params.items()}
    wrong_key = {("W9" if k == "W1" else k): g for k, g in grads.items()}
    with pytest.raises(ConfigError, match=r"grads do not match params: missing \['W1'\], unexpected \['W9'\]"):
        step.apply(wrong_key)
    with pytest.raises(xpnet.ShapeError, match=r"grads\['b1'\] has shape \(3,\) but params\['b1'\] has \(8,\)"):
        step.apply({**grads, "b1": bj.asarray(np.zeros(3))})
    with pytest.raises(BackendMismatchError, match=r"grads\['W1'\] is a ndarray"):
        step.apply({**grads, "W1": np.zeros((6, 8))})
    with pytest.raises(ConfigError, match="grads must be a dict keyed like params"):
        step.apply(None)
    with pytest.raises(BackendMismatchError, match="compiled gradient input"):
        step.gradient(bn.asarray(x), bj.asarray(t))
    with pytest.raises(BackendMismatchError, match="compiled gradient targets"):
        step.gradient(bj.asarray(x), bn.asarray(t))
    for k, v in model.params.items():  # nothing was donated or changed
        assert not v.is_deleted() and np.array_equal(xpnet.to_numpy(v), before[k]), k
    assert opt.state["step"] == 0
    assert all(not v.is_deleted() and not np.any(xpnet.to_numpy(v)) for v in opt.state["v"].values())
    step.apply(grads)  # and the step still works
    assert opt.state["step"] == 1 and not np.array_equal(xpnet.to_numpy(model.params["W1"]), before["W1"])
    tally("hostile inputs", 6)


@pytest.mark.parametrize("layers", [{}, {"batchnorm": True, "dropout": 0.2}], ids=["plain", "both"])
def test_the_eager_step_has_gradient_and_apply_too(layers):
    _, bn = backends()
    model, ref = model_on(bn, **layers), model_on(bn, **layers)
    opt, ref_opt = xpnet.Adam(lr=0.01), xpnet.Adam(lr=0.01)
    step = xpnet.compile_step(model, opt, warn=False)
    assert not step.compiled
    x, t = data(30)
    for i in range(0, 30, 10):
        loss, grads = step.gradient(bn.asarray(x[i:i + 10]), bn.asarray(t[i:i + 10]))
        want = ref.gradient(bn.asarray(x[i:i + 10]), bn.asarray(t[i:i + 10]), check=False)
        assert list(grads) == list(want) and all(np.array_equal(grads[k], want[k]) for k in want)
        step.apply(grads)
        ref_opt.update(ref.params, want)
    assert_same_model(model, opt, ref, ref_opt, tol=0)
    with pytest.raises(ConfigError, match="grads do not match params"):
        step.apply({"W1": grads["W1"]})


# ------------------------------------------------------------------ with the trainer
def iris_on_jax(**kw):
    model = xpnet.mlp([4, 8, 3], seed=0, backend=xpnet.get_backend("jax", dtype="float64"), **kw)
    return model


def test_the_trainer_compiled_and_eager_give_the_same_epochs():
    d = datasets.iris()
    runs = {}
    for mode in ("on", "off"):
        model = iris_on_jax(dropout=0.1)
        runs[mode] = Trainer(model, xpnet.Adam(lr=0.01), d, batch_size=16, seed=3, log=None, compile=mode).fit(3)
    for a, b in zip(runs["on"].records, runs["off"].records, strict=True):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key
    assert "compile_seconds" in runs["on"].records[0] and "compile_seconds" not in runs["on"].records[1]


def test_a_diverging_compiled_run_names_the_epoch_and_step(tmp_path):
    trainer = Trainer(iris_on_jax(), xpnet.SGD(lr=0.1), datasets.iris(), batch_size=16, log=None, out=tmp_path,
                      compile="on")
    trainer.fit(2)
    trainer.optimizer.lr = 1e300
    with pytest.raises(NonFiniteError, match=r"in epoch 3, step \d+ of 8.*last good checkpoint \(epoch 2\)"):
        trainer.fit(10)
    assert trainer.epoch == 2 and C.load(tmp_path / "checkpoint.npz")[2]["epoch"] == 2
    for v in trainer.model.params.values():  # rolled back to live, finite arrays
        assert np.isfinite(xpnet.to_numpy(v)).all()


def test_ctrl_c_in_a_compiled_run_rolls_back_and_continues_exactly(monkeypatch):
    d = datasets.iris()
    one = Trainer(iris_on_jax(), xpnet.Adam(lr=0.01), d, batch_size=16, seed=1, log=None)
    one.fit(4)
    two = Trainer(iris_on_jax(), xpnet.Adam(lr=0.01), d, batch_size=16, seed=1, log=None)
    real, calls = two.train_epoch, []

    def interrupted():
        calls.append(1)
        loss = real()  # the epoch ran (its inputs donated), then Ctrl-C
        if len(calls) == 3:
            raise KeyboardInterrupt
        return loss

    monkeypatch.setattr(two, "train_epoch", interrupted)
    assert two.fit(4).stopped == "interrupted" and two.epoch == 2
    monkeypatch.setattr(two, "train_epoch", real)
    two.fit(4)
    for k in one.model.params:
        np.testing.assert_allclose(xpnet.to_numpy(two.model.params[k]), xpnet.to_numpy(one.model.params[k]),
                                   rtol=1e-12, atol=1e-14)


def test_compile_on_where_there_is_no_compiler_is_a_message(tmp_path, capsys):
    code = cli.main(["train", "--dataset", "iris", "--epochs", "1", "--compile", "on", "--out", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 1 and "xpnet compiles the step on jax, and captures it as a CUDA graph" in err
    assert "Traceback" not in err
    with pytest.raises(ConfigError, match="compile must be one of auto, on, off"):
        build("iris", compile="yes", log=None)
    tally("hostile inputs", 2)


def test_cli_jax_compiled_reaches_numpys_accuracy_and_its_checkpoint_evaluates_the_same(tmp_path, capsys):
    acc = {}
    for backend in ("numpy", "jax"):
        out = tmp_path / backend
        extra = ["--compile", "on"] if backend == "jax" else []
        code = cli.main(["train", "--epochs", "5", "--backend", backend, "--out", str(out), "--quiet", "--no-plot",
                         *extra])
        text, err = capsys.readouterr()
        assert code == 0, err
        acc[backend] = float(text.split("final test accuracy ")[1].split()[0])
    assert round(acc["jax"], 3) == round(acc["numpy"], 3)
    assert cli.main(["eval", str(tmp_path / "jax" / "checkpoint.npz"), "--backend", "numpy", "--json"]) == 0
    import json

    evaluated = json.loads(capsys.readouterr()[0])
    assert round(evaluated["test_acc"], 4) == round(acc["jax"], 4)


@pytest.mark.parametrize("name", ["jax", "numpy"])
def test_run_takes_zero_steps_and_refuses_batches_and_labels_of_different_counts(name):
    be = xpnet.get_backend(name, dtype="float64")
    model, opt = model_on(be), xpnet.SGD(lr=0.1)
    step = xpnet.compile_step(model, opt, warn=False)
    before = {k: xpnet.to_numpy(v).copy() for k, v in model.params.items()}
    none = step.run(be.asarray(np.zeros((0, 4, 6))), be.asarray(np.zeros((0, 4), dtype=np.int64)))
    assert none.shape == (0,) and opt.state["step"] == 0
    x, t = data(20)
    for xs, ts in [(x.reshape(5, 4, 6), t[:16].reshape(4, 4)),  # 5 batches, 4 label batches
                   (x.reshape(4, 5, 6), t.reshape(5, 4)),  # 4 batches and 5 (an extra one never ignored)
                   (x[0], t[:1])]:  # one sample, not stacked batches
        with pytest.raises(xpnet.ShapeError, match=r"run\(xs, ts\) takes K batches stacked"):
            step.run(be.asarray(xs), be.asarray(ts))
    for k in before:
        np.testing.assert_array_equal(xpnet.to_numpy(model.params[k]), before[k])
    assert opt.state["step"] == 0
    tally("hostile inputs", 3)


BAD_EPOCHS = [
    (lambda n: np.arange(n) + 5, 5, "indices from 5 to 24, outside the 20 samples"),  # clamped on jax before
    (lambda n: -np.arange(n), 5, "indices from -19 to 0"),
    (lambda n: np.arange(n // 2), 5, "a 1-d array of 20 integer sample indices"),
    (lambda n: np.arange(float(n)), 5, "a 1-d array of 20 integer sample indices"),  # NaN losses before
    (lambda n: np.arange(n), 0, "batch_size must be a positive integer"),
    (lambda n: np.arange(n), 2.5, "batch_size must be a positive integer"),  # NaN losses before
]


@pytest.mark.parametrize("order, batch, says", BAD_EPOCHS)
def test_an_epoch_with_a_bad_order_or_batch_size_is_refused_before_any_step(order, batch, says):
    bj, _ = backends()
    model, opt = model_on(bj), xpnet.SGD(lr=0.1)
    step = xpnet.compile_step(model, opt)
    x, t = data(20)
    before = {k: xpnet.to_numpy(v).copy() for k, v in model.params.items()}
    with pytest.raises(ConfigError, match=says):
        step.epoch(bj.asarray(x), bj.asarray(t), order(20), batch)
    for k in before:
        np.testing.assert_array_equal(xpnet.to_numpy(model.params[k]), before[k])
    assert opt.state["step"] == 0
    tally("hostile inputs", 1)
