"""CUDA-graph steps (cupy; torch on CUDA): the step captured once per batch shape and replayed.

Without a GPU, :class:`HostGraph` stands for the capture: like a CUDA stream capture it runs
no arithmetic when it captures (it only keeps the body), and a replay runs the body on the
static buffers. That checks everything around the graph on numpy and torch arrays: the
warm-up step, the static buffers written back in place, a learning rate and step count read
from the device, host-drawn Dropout masks copied in, arrays put into the model since (a
rollback) copied into the statics, one capture per batch shape, the trainer's epoch. That the
same layer code does no host read inside a step is what the jax tests show (a traced value
cannot be read on the host). The tests at the end capture real graphs, on a CUDA GPU only.
"""

import contextlib
import importlib.util

import numpy as np
import pytest
from conftest import tally

import xpnet
from xpnet import backend as B
from xpnet import compile as XC
from xpnet import datasets
from xpnet.compile import make_step
from xpnet.errors import ConfigError
from xpnet.train import Trainer


class HostGraph:
    """A stand-in for one CUDA graph on the CPU (see the module's docstring)."""

    def __init__(self, ref):
        self.body, self.replays = None, 0

    def warmup(self):
        return contextlib.nullcontext()

    def capture(self, body):
        self.body = body  # a capture runs no kernel

    def replay(self):
        self.replays += 1
        self.body()


class CaptureRunsPython(HostGraph):
    """Closer to a real capture: the body's Python runs (the layers keep the arrays it made),
    and every value it computed into the step's buffers is thrown away again."""

    step = None  # the GraphStep under test

    def capture(self, body):
        super().capture(body)
        st = self.step
        params, state, slots = st._statics
        arrays = [*params.values(), *state.values(), *(a for s in slots.values() for a in s.values()),
                  st._lr[1], st._count[1], *(a for g in st._graphs.values() for a in (g.x, g.t, g.loss, *g.masks))]
        saved = [xpnet.to_numpy(a).copy() for a in arrays]
        body()
        for a, v in zip(arrays, saved):
            a[...] = B.from_host_like(v, a)


def host_backends():
    rows = [xpnet.get_backend("numpy", dtype="float64")]
    if importlib.util.find_spec("torch") is not None:
        rows.append(xpnet.get_backend("torch", device="cpu", dtype="float64"))
    return rows


BACKENDS = host_backends()


def model_on(be, **kw):
    return xpnet.mlp([6, 8, 8, 3], seed=1, backend=be, **kw)


def data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)), rng.integers(0, 3, n)


def eager_step(model, opt, x, t):
    loss = model.loss(x, t, train=True, check=False)
    model.backward(input_grad=False)
    opt.update(model.params, model.grads)
    return float(xpnet.to_numpy(loss))


def assert_same_state(m1, o1, m2, o2, tol=1e-10):
    for k in m2.params:
        np.testing.assert_allclose(xpnet.to_numpy(m1.params[k]), xpnet.to_numpy(m2.params[k]), rtol=tol, atol=tol,
                                   err_msg=k)
    for k in m2.state:
        np.testing.assert_allclose(xpnet.to_numpy(m1.state[k]), xpnet.to_numpy(m2.state[k]), rtol=tol, atol=tol,
                                   err_msg=k)
    for s in o2.slots:
        for k in o2.state[s]:
            np.testing.assert_allclose(xpnet.to_numpy(o1.state[s][k]), xpnet.to_numpy(o2.state[s][k]), rtol=tol,
                                       atol=tol, err_msg=f"{s}[{k}]")
    assert o1.state["step"] == o2.state["step"] and isinstance(o1.state["step"], int)


def batches(be, x, t, count, size=10):
    """The first ``count`` batches of ``size`` rows, on ``be``."""
    return [(be.asarray(x[i * size:(i + 1) * size]), be.asarray(t[i * size:(i + 1) * size])) for i in range(count)]


def snapshot(be, model, opt):
    """Host-made copies of what the trainer's rollback puts back (torch CPU tensors and numpy
    arrays share memory, hence the copy)."""
    own = lambda v: be.asarray(xpnet.to_numpy(v).copy())
    return ({k: own(v) for k, v in model.params.items()}, {k: own(v) for k, v in model.state.items()},
            {s: {k: own(v) for k, v in opt.state[s].items()} for s in opt.slots}, opt.state["step"])


def roll_back(model, opt, saved):
    """What the trainer's rollback does: new arrays in the model and the optimizer's state."""
    model.params.update(saved[0])
    model.state.update(saved[1])
    for s in opt.slots:
        opt.state[s] = dict(saved[2][s])
    opt.state["step"] = saved[3]


def twins(be, optimizer="adam", graph=HostGraph, **layers):
    mg, me = model_on(be, **layers), model_on(be, **layers)
    og, oe = xpnet.get_optimizer(optimizer, 0.05), xpnet.get_optimizer(optimizer, 0.05)
    return XC.GraphStep(mg, og, graph, "test"), mg, og, me, oe


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("layers", [{}, {"batchnorm": True, "dropout": 0.2}], ids=["plain", "bn-dropout"])
def test_replayed_steps_match_eager_float64(be, optimizer, layers):
    step, mg, og, me, oe = twins(be, optimizer, **layers)
    x, t = data()
    sizes = [10] * 19 + [7]  # 20 steps, the last one another batch shape (a second capture)
    lo = 0
    for n in sizes:
        xb, tb = be.asarray(x[lo:lo + n]), be.asarray(t[lo:lo + n])
        loss = step(xb, tb)
        want = eager_step(me, oe, xb, tb)
        assert abs(float(xpnet.to_numpy(loss)) - want) <= 1e-10 * max(1.0, abs(want))
        lo += n
    assert_same_state(mg, og, me, oe)
    assert step.compiles == 2  # one capture per batch shape
    assert sum(g.graph.replays for g in step._graphs.values()) == 18  # each capture's call is its warm-up
    assert all(B.backend_name(v) == be.name for v in mg.params.values())


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("attr, value, captures", [
    ("lr", 0.01, 1),  # read from the device: no new capture
    ("momentum", 0.5, 2),  # baked into the captured kernels: captured again
])
def test_a_new_learning_rate_is_read_from_the_device_another_hyperparameter_recaptures(be, attr, value, captures):
    step, mg, og, me, oe = twins(be, "momentum")
    x, t = data()
    for i, (xb, tb) in enumerate(batches(be, x, t, 8)):
        if i == 4:
            setattr(og, attr, value)
            setattr(oe, attr, value)
        step(xb, tb)
        eager_step(me, oe, xb, tb)
    assert step.compiles == captures
    assert_same_state(mg, og, me, oe)


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_arrays_put_into_the_model_are_copied_into_the_captured_buffers(be):
    """What the trainer's rollback does (new arrays in model.params and in the optimizer's
    state): the next replay must see them, not the buffers captured before."""
    step, mg, og, me, oe = twins(be, "adam", batchnorm=True)
    x, t = data()
    data_batches = batches(be, x, t, 12)
    for xb, tb in data_batches[:3]:
        step(xb, tb)
        eager_step(me, oe, xb, tb)
    saved = snapshot(be, mg, og)
    for xb, tb in data_batches[3:6]:
        step(xb, tb)
    roll_back(mg, og, saved)  # to step 3
    for xb, tb in data_batches[6:]:
        step(xb, tb)
        eager_step(me, oe, xb, tb)
    assert_same_state(mg, og, me, oe)
    assert step.compiles == 1


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_dropout_masks_change_every_replay_and_are_eagers(be):
    step, mg, og, me, oe = twins(be, "sgd", dropout=0.5)
    x, t = data()
    drop_g = [layer for layer in mg.layers if isinstance(layer, xpnet.Dropout)][0]
    drop_e = [layer for layer in me.layers if isinstance(layer, xpnet.Dropout)][0]
    masks = []
    for i, (xb, tb) in enumerate(batches(be, x, t, 5)):
        step(xb, tb)
        eager_step(me, oe, xb, tb)
        graph_mask = next(iter(step._graphs.values())).masks[0] if i else drop_g.mask  # step 1: the warm-up's
        np.testing.assert_array_equal(xpnet.to_numpy(graph_mask), xpnet.to_numpy(drop_e.mask))
        masks.append(xpnet.to_numpy(graph_mask).copy())
    assert all(not np.array_equal(a, b) for a, b in zip(masks, masks[1:]))
    assert_same_state(mg, og, me, oe)


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_the_epoch_form_is_the_steps_and_captures_once_per_shape(be):
    step, mg, og, me, oe = twins(be, "adam", dropout=0.2)
    x, t = data(103)
    X, T = be.asarray(x), be.asarray(t)
    order = np.random.default_rng(3).permutation(103)
    for _ in range(2):
        losses, mean = step.epoch(X, T, order, 16)
        want = []
        for lo in range(0, 103, 16):
            sel = order[lo:lo + 16]
            want.append(eager_step(me, oe, be.asarray(x[sel]), be.asarray(t[sel])))
        np.testing.assert_allclose(xpnet.to_numpy(losses), want, rtol=1e-10, atol=1e-12)
        sizes = [min(16, 103 - lo) for lo in range(0, 103, 16)]
        assert abs(float(xpnet.to_numpy(mean)) - np.dot(want, sizes) / 103) < 1e-10
    assert step.compiles == 2  # 16 and the last batch of 7, for both epochs
    assert_same_state(mg, og, me, oe)


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_after_a_capture_the_layers_hold_the_warm_ups_arrays(be):
    """A real capture runs the body's Python but no kernel: arrays it leaves in the layers
    would hold no values. They are put back to the warm-up's."""
    step, mg, og, me, oe = twins(be, "adam", graph=CaptureRunsPython)
    CaptureRunsPython.step = step
    x, t = data()
    xb, tb = be.asarray(x[:10]), be.asarray(t[:10])
    loss = step(xb, tb)
    want = eager_step(me, oe, xb, tb)
    # the capture's forward ran from the updated weights; what the layers hold is the warm-up's
    np.testing.assert_allclose(xpnet.to_numpy(mg.layers[2].x), xpnet.to_numpy(me.layers[2].x), rtol=1e-12)
    for k in me.params:
        np.testing.assert_allclose(xpnet.to_numpy(mg.grads[k]), xpnet.to_numpy(me.grads[k]), rtol=1e-12, err_msg=k)
    assert abs(float(xpnet.to_numpy(loss)) - want) < 1e-12
    for xb, tb in batches(be, x, t, 4)[1:]:
        step(xb, tb)
        eager_step(me, oe, xb, tb)
    assert_same_state(mg, og, me, oe)


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_a_parameter_changed_in_dtype_is_refused(be):
    step, mg, og, me, oe = twins(be, "sgd")
    x, t = data()
    step(be.asarray(x[:10]), be.asarray(t[:10]))
    mg.params["W1"] = xpnet.get_backend(be.name, dtype="float32").asarray(np.zeros((6, 8)))
    with pytest.raises(ConfigError, match=r"'W1' changed from shape \(6, 8\) .*float64 to \(6, 8\) .*float32 "
                                          r"since the step was captured; make a new compile_step"):
        step(be.asarray(x[:10]), be.asarray(t[:10]))
    tally("hostile inputs", 1)


def test_arrays_of_another_backend_are_refused_before_anything_changes():
    pytest.importorskip("torch", reason="torch is not installed")
    be = BACKENDS[0]
    step, mg, og, me, oe = twins(be, "sgd")
    x, t = data()
    before = {k: v.copy() for k, v in mg.params.items()}
    torch_be = xpnet.get_backend("torch", device="cpu", dtype="float64")
    with pytest.raises(xpnet.errors.BackendMismatchError):
        step(torch_be.asarray(x[:10]), torch_be.asarray(t[:10]))
    for k in before:
        np.testing.assert_array_equal(mg.params[k], before[k])
    assert og.state["step"] == 0
    tally("hostile inputs", 1)


# ---------------------------------------------------------------------- the trainer and the CLI
def test_the_trainer_with_a_captured_step_ends_where_eager_does(monkeypatch):
    monkeypatch.setattr(XC, "_graph_kind", lambda name, ref: HostGraph if name == "numpy" else None)
    be = xpnet.get_backend("numpy", dtype="float64")
    runs = {}
    for mode in ("off", "on"):
        model = xpnet.mlp([4, 6, 3], seed=1, backend=be, dropout=0.2)
        trainer = Trainer(model, xpnet.Adam(lr=0.01), datasets.iris(), batch_size=16, seed=2, log=None, compile=mode)
        assert (not trainer.step.compiled) == (mode == "off")
        runs[mode] = (trainer.fit(3), model)
    assert runs["on"][0].stopped == "completed"
    for a, b in zip(runs["on"][0].records, runs["off"][0].records):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-12 and a["test_acc"] == b["test_acc"]
    for k in runs["off"][1].params:
        np.testing.assert_allclose(runs["on"][1].params[k], runs["off"][1].params[k], rtol=1e-12, atol=1e-14)


def test_auto_keeps_graphs_off_until_measured_and_mpi_refuses_them(monkeypatch):
    monkeypatch.setattr(XC, "_graph_kind", lambda name, ref: HostGraph if name == "numpy" else None)
    model = xpnet.mlp([4, 6, 3], seed=1)
    assert not make_step(model, xpnet.SGD(lr=0.1), "auto").compiled
    assert isinstance(make_step(model, xpnet.SGD(lr=0.1), "on"), XC.GraphStep)
    assert not make_step(model, xpnet.SGD(lr=0.1), "auto", distributed=True).compiled
    with pytest.raises(ConfigError, match="not split around the allreduce yet; use --compile off"):
        make_step(model, xpnet.SGD(lr=0.1), "on", distributed=True)
    tally("hostile inputs", 1)


def test_torch_on_the_cpu_is_eager_and_says_why():
    pytest.importorskip("torch", reason="torch is not installed")
    model = xpnet.mlp([4, 6, 3], seed=1, backend=xpnet.get_backend("torch", device="cpu"))
    with pytest.warns(RuntimeWarning, match="torch.compile was measured slower than eager on the CPU"):
        step = xpnet.compile_step(model, xpnet.SGD(lr=0.1))
    assert not step.compiled


def test_a_device_scalar_learning_rate_subtracts_in_place():
    pytest.importorskip("torch", reason="torch is not installed")
    import torch

    p, g = torch.ones(3, dtype=torch.float64), torch.full((3,), 2.0, dtype=torch.float64)
    same = p
    B.sub_scaled_(p, g, torch.tensor(0.25, dtype=torch.float64))
    assert same is p and torch.equal(p, torch.full((3,), 0.5, dtype=torch.float64))


# ---------------------------------------------------------------------- real CUDA graphs (a GPU only)
def cuda_rows():
    rows = []
    if importlib.util.find_spec("cupy") is not None:
        rows.append(("cupy", None))
    if importlib.util.find_spec("torch") is not None:
        rows.append(("torch", "cuda"))
    return rows or [("cupy", None)]


@pytest.mark.parametrize("name, dev", cuda_rows(), ids=lambda v: str(v))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_real_cuda_graphs_match_eager(name, dev, optimizer):
    if not B.installed(name):
        pytest.skip(f"{name} is not installed")
    try:
        be = xpnet.get_backend(name, device=dev, dtype="float64")
    except B.BackendError as e:
        pytest.skip(f"needs a CUDA GPU: {e}")
    if XC._graph_kind(name, be.asarray(np.zeros(1))) is None:
        pytest.skip(f"needs a CUDA GPU ({name} runs on {B.device_label(be.device)})")
    mg, me = model_on(be, batchnorm=True, dropout=0.2), model_on(be, batchnorm=True, dropout=0.2)
    og, oe = xpnet.get_optimizer(optimizer, 0.05), xpnet.get_optimizer(optimizer, 0.05)
    step = xpnet.compile_step(mg, og)
    assert isinstance(step, XC.GraphStep)
    x, t = data(103)
    order = np.random.default_rng(3).permutation(103)
    for _ in range(3):
        losses, _ = step.epoch(be.asarray(x), be.asarray(t), order, 16)
        want = [eager_step(me, oe, be.asarray(x[order[lo:lo + 16]]), be.asarray(t[order[lo:lo + 16]]))
                for lo in range(0, 103, 16)]
        np.testing.assert_allclose(xpnet.to_numpy(losses), want, rtol=1e-9, atol=1e-10)
    assert step.compiles == 2
    assert_same_state(mg, og, me, oe, tol=1e-9)


def test_the_bench_has_a_cuda_graph_contender_that_trains_like_xpnet(monkeypatch):
    from xpnet import bench

    assert "xpnet[cupy] CUDA graph step" in bench.gpu_makers(True, False)
    assert "xpnet[torch cuda:0] CUDA graph step" in bench.gpu_makers(False, True)
    monkeypatch.setattr(XC, "_graph_kind", lambda name, ref: HostGraph if name == "numpy" else None)
    w = bench.Workload("W3", "tiny", (64, 20, 10), 96, 32)
    X, T = bench.make_data(w)
    eager, graph = bench.XPNet(w, X, T, "numpy"), bench.XPNetCompiled(w, X, T, "numpy")
    assert graph.name == "xpnet[numpy] CUDA graph step"
    for i in range(6):
        eager.step(i % 3)
        graph.step(i % 3)
    for k in eager.model.params:  # float32: the same arithmetic, in place
        np.testing.assert_allclose(graph.model.params[k], eager.model.params[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_a_step_interrupted_after_its_replay_does_not_shift_the_step_count(be):
    """Ctrl-C after the graph ran but before the host count moved on: the trainer rolls back,
    and the device count (Adam's bias correction) must follow the host's again."""
    step, mg, og, me, oe = twins(be, "adam")
    x, t = data()
    data_batches = batches(be, x, t, 8)
    for xb, tb in data_batches[:3]:
        step(xb, tb)
        eager_step(me, oe, xb, tb)
    saved = snapshot(be, mg, og)
    graph = next(iter(step._graphs.values())).graph
    real = graph.replay

    def interrupted():
        real()
        raise KeyboardInterrupt

    graph.replay = interrupted
    with pytest.raises(KeyboardInterrupt):
        step(*data_batches[3])
    graph.replay = real
    roll_back(mg, og, saved)
    for xb, tb in data_batches[3:]:
        step(xb, tb)
        eager_step(me, oe, xb, tb)
    assert_same_state(mg, og, me, oe)


class CaptureFails(HostGraph):
    def capture(self, body):
        raise RuntimeError("operation not permitted when stream is capturing")


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_a_capture_that_fails_is_a_clear_error_and_the_warm_up_step_stands(be):
    step, mg, og, me, oe = twins(be, "adam", graph=CaptureFails)
    x, t = data()
    xb, tb = be.asarray(x[:10]), be.asarray(t[:10])
    with pytest.raises(xpnet.CaptureError, match=r"could not be captured as a CUDA graph for batch shape \(10, 6\) "
                                                 r"\(RuntimeError: operation not permitted.*step 1\).*--compile off"):
        step(xb, tb)
    eager_step(me, oe, xb, tb)
    assert_same_state(mg, og, me, oe)  # one step, counted once
    assert step._graphs == {} and step.compiles == 0
    tally("hostile inputs", 1)


def test_the_cli_reports_a_failed_capture_in_one_line(monkeypatch, tmp_path, capsys):
    from xpnet import cli

    monkeypatch.setattr(XC, "_graph_kind", lambda name, ref: CaptureFails if name == "numpy" else None)
    code = cli.main(["train", "--dataset", "iris", "--epochs", "2", "--compile", "on", "--out", str(tmp_path / "o"),
                     "--no-plot"])
    _, err = capsys.readouterr()
    assert code == 1 and "xpnet train: error: the training step could not be captured as a CUDA graph" in err
    assert "Traceback" not in err
    tally("hostile inputs", 1)


def test_ctrl_c_inside_a_replay_rolls_back_and_training_continues_exactly(monkeypatch, tmp_path):
    """The trainer's rollback puts copies into the model; the captured buffers take them in."""
    monkeypatch.setattr(XC, "_graph_kind", lambda name, ref: HostGraph if name == "numpy" else None)
    be = xpnet.get_backend("numpy", dtype="float64")
    opts = dict(batch_size=16, seed=2, log=None)
    one = Trainer(xpnet.mlp([4, 6, 3], seed=1, backend=be, batchnorm=True), xpnet.Adam(lr=0.01), datasets.iris(),
                  compile="off", **opts)
    one.fit(4)
    two = Trainer(xpnet.mlp([4, 6, 3], seed=1, backend=be, batchnorm=True), xpnet.Adam(lr=0.01), datasets.iris(),
                  compile="on", out=tmp_path, **opts)
    replays = []
    real_replay = HostGraph.replay

    def replay(self):
        replays.append(1)
        real_replay(self)
        if len(replays) == 20:  # in the third epoch (7 full batches of 16 and one of 8 an epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(HostGraph, "replay", replay)
    assert two.fit(4).stopped == "interrupted" and two.epoch == 2
    two.fit(4)
    for k in one.model.params:
        # (atol: b1 feeds BatchNormalization, its gradient is rounding noise around 0)
        np.testing.assert_allclose(two.model.params[k], one.model.params[k], rtol=1e-10, atol=1e-10, err_msg=k)
    for k in one.model.state:
        np.testing.assert_allclose(two.model.state[k], one.model.state[k], rtol=1e-10, atol=1e-10, err_msg=k)
    assert two.optimizer.state["step"] == one.optimizer.state["step"]


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_an_optimizer_of_another_model_is_refused_before_anything_changes(be):
    other, model = xpnet.mlp([6, 8, 3], seed=2, backend=be), model_on(be)  # W1..b2 and W1..b3
    opt = xpnet.Adam(lr=0.01)
    x, t = data()
    eager_step(other, opt, be.asarray(x[:10]), be.asarray(t[:10]))  # the optimizer's state is other's
    slots = {k: xpnet.to_numpy(v).copy() for k, v in opt.state["m"].items()}
    before = {k: xpnet.to_numpy(v).copy() for k, v in model.params.items()}
    step = XC.GraphStep(model, opt, HostGraph, "test")
    with pytest.raises(ConfigError, match="already updates another model's parameters"):
        step(be.asarray(x[:10]), be.asarray(t[:10]))
    for k in before:
        np.testing.assert_array_equal(xpnet.to_numpy(model.params[k]), before[k])
    assert sorted(opt.state["m"]) == sorted(slots)  # no slot added for the other model's keys
    for k in slots:
        np.testing.assert_array_equal(xpnet.to_numpy(opt.state["m"][k]), slots[k])
    assert opt.state["step"] == 1 and step._graphs == {}
    tally("hostile inputs", 1)


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_run_takes_zero_steps_and_refuses_batches_and_labels_of_different_counts(be):
    step, mg, og, me, oe = twins(be, "sgd")
    x, t = data(20)
    assert step.run(be.asarray(x[:0].reshape(0, 4, 6)), be.asarray(t[:0].reshape(0, 4))).shape == (0,)
    with pytest.raises(xpnet.ShapeError, match=r"run\(xs, ts\) takes K batches stacked"):
        step.run(be.asarray(x.reshape(4, 5, 6)), be.asarray(t.reshape(5, 4)))
    assert og.state["step"] == 0 and step.compiles == 0
    losses = step.run(be.asarray(x.reshape(5, 4, 6)), be.asarray(t.reshape(5, 4)))
    assert losses.shape == (5,) and og.state["step"] == 5
    tally("hostile inputs", 1)


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_an_epoch_with_indices_outside_the_data_is_refused(be):
    step, mg, og, me, oe = twins(be, "sgd")
    x, t = data(20)
    with pytest.raises(ConfigError, match="indices from 5 to 24, outside the 20 samples"):
        step.epoch(be.asarray(x), be.asarray(t), np.arange(20) + 5, 5)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        step.epoch(be.asarray(x), be.asarray(t), np.arange(20), 0)
    assert og.state["step"] == 0 and step.compiles == 0
    tally("hostile inputs", 2)


@pytest.mark.parametrize("name, dev", cuda_rows(), ids=lambda v: str(v))
def test_real_cuda_graphs_in_the_trainer_end_where_eager_does(name, dev, tmp_path):
    if not B.installed(name):
        pytest.skip(f"{name} is not installed")
    try:
        be = xpnet.get_backend(name, device=dev, dtype="float64")
    except B.BackendError as e:
        pytest.skip(f"needs a CUDA GPU: {e}")
    if XC._graph_kind(name, be.asarray(np.zeros(1))) is None:
        pytest.skip(f"needs a CUDA GPU ({name} runs on {B.device_label(be.device)})")
    runs = {}
    for mode in ("off", "on"):
        model = xpnet.mlp([4, 6, 3], seed=1, backend=be, dropout=0.2, batchnorm=True)
        trainer = Trainer(model, xpnet.Adam(lr=0.01), datasets.iris(), batch_size=16, seed=2, log=None, compile=mode,
                          out=tmp_path / mode)
        assert isinstance(trainer.step, XC.GraphStep) == (mode == "on")
        runs[mode] = (trainer.fit(3), model)
    for a, b in zip(runs["on"][0].records, runs["off"][0].records):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-9 and a["test_acc"] == b["test_acc"]
    for k in runs["off"][1].params:
        np.testing.assert_allclose(xpnet.to_numpy(runs["on"][1].params[k]), xpnet.to_numpy(runs["off"][1].params[k]),
                                   rtol=1e-9, atol=1e-10, err_msg=k)
