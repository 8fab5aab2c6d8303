"""``xpnet bench``'s W4 (the first book's ConvNet step) and W5 (the second book's LSTM language
model step): the hand-written contenders compute what torch computes, xpnet's rows what the
hand-written ones compute, and rows that cannot be built say why.

No timing is asserted (speed targets are reported by the benchmark, never asserted in tests).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from xpnet import bench
from xpnet.bench import convnet, lstm
from xpnet.bench.workloads import WORKLOADS

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")


def tiny(name: str, **kw) -> bench.Workload:
    w = WORKLOADS[name]
    sizes = kw.pop("sizes", w.sizes)
    return bench.Workload(w.name, "tiny", sizes, 8, 4, None, w.kind, kw.pop("seq", w.seq))


def test_network_workloads_count_their_matmul_flops():
    w4, w5 = WORKLOADS["W4"], WORKLOADS["W5"]
    conv = 2 * 24 * 24 * 25 * 30  # im2col rows x (C*K*K) x filters, per sample
    assert w4.flops() == 100 * (2 * conv + 3 * 2 * (4320 * 100 + 100 * 10))  # no conv input gradient
    assert w4.steps_per_epoch == 60 and w4.batch * w4.steps_per_epoch == 6_000
    gates = 2 * 650 * 4 * 650  # x Wx and h Wh, per token
    assert w5.flops() == 3 * (2 * gates + 2 * 650 * 10_000) * 20 * 35
    q = bench.quick_workload(w5)
    assert (q.kind, q.seq, q.batch) == ("lstm", 35, 20) and q.sizes[2] < w5.sizes[2]
    X, T = bench.make_data(q)
    assert X.shape == T.shape == (q.n, 35) and X.dtype == np.int64
    assert 0 <= X.min() and X.max() < q.sizes[0] and np.array_equal(X[:, 1:], T[:, :-1])  # next-token targets


@needs_torch
def test_conv_textbook_trains_like_torch():
    """The book's im2col / col2im / argmax pooling, written out, against nn.Conv2d + max_pool2d."""
    import torch

    w = tiny("W4")
    X, T = bench.make_data(w)
    a, b = convnet.NumpyConvTextbook(w, X, T), convnet.TorchConv(w, X, T)
    for i in (0, 1, 0):
        a.step(i)
        b.step(i)
        assert float(a.loss) == pytest.approx(float(b.loss), rel=1e-5)
    got = [b.conv.weight, b.conv.bias, b.fc1.weight.T, b.fc1.bias, b.fc2.weight.T, b.fc2.bias]
    with torch.no_grad():
        for mine, theirs in zip(a.params, got, strict=True):
            np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-4, atol=1e-6)
    assert a.dx.shape == (4, 1, 28, 28)  # the book's conv backward also gives the input gradient


def test_conv_col2im_is_the_adjoint_of_im2col():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    for k, s, p in ((3, 1, 0), (2, 2, 0), (3, 2, 1)):
        col = convnet.im2col(x, k, k, s, p)
        y = rng.standard_normal(col.shape)
        assert np.sum(col * y) == pytest.approx(np.sum(x * convnet.col2im(y, x.shape, k, k, s, p)), rel=1e-10)


def test_conv_xpnet_trains_like_the_textbook():
    w = tiny("W4")
    X, T = bench.make_data(w)
    a, b = convnet.NumpyConvTextbook(w, X, T), convnet.XPNetConv(w, X, T, "numpy")
    for i in (0, 1):
        a.step(i)
        b.step(i)
    for mine, key in zip(a.params, ("W1", "b1", "W2", "b2", "W3", "b3"), strict=True):
        np.testing.assert_allclose(mine, b.model.params[key], rtol=1e-4, atol=1e-6)


@needs_torch
def test_lstm_textbook_step_matches_torch():
    """The book's TimeEmbedding / TimeLSTM (gates f, g, i, o) / TimeAffine / TimeSoftmaxWithLoss,
    written out, against nn.Embedding + nn.LSTM (gates i, f, g, o) + nn.Linear: the same loss and,
    after one SGD step, the same weights (torch's second LSTM bias moves too, so one step only)."""
    import torch

    w = tiny("W5", sizes=(50, 8, 6, 50), seq=5)
    X, T = bench.make_data(w)
    a, b = lstm.NumpyLSTMTextbook(w, X, T), lstm.TorchLSTM(w, X, T)
    a.step(1)
    b.step(1)
    assert float(a.loss) == pytest.approx(float(b.loss), rel=1e-6)
    H, order = 6, [2, 0, 1, 3]

    def gates(m):
        return np.concatenate([m[..., k * H:(k + 1) * H] for k in order], axis=-1)

    E, Wx, Wh, bias, Wa, ba = a.params
    with torch.no_grad():
        pairs = [(E, b.emb.weight), (gates(Wx).T, b.lstm.weight_ih_l0), (gates(Wh).T, b.lstm.weight_hh_l0),
                 (gates(bias), b.lstm.bias_ih_l0), (Wa.T, b.fc.weight), (ba, b.fc.bias)]
        for mine, theirs in pairs:
            np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-4, atol=1e-7)
    assert not np.array_equal(E, lstm.init_lstm_weights(w)[0])  # the embedding did learn


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_lstm_xpnet_trains_like_the_textbook(backend):
    """xpnet's TimeEmbedding / TimeLSTM / TimeAffine / TimeSoftmaxWithLoss, eager on numpy and
    compiled on jax (the word-id check done once, outside the trace), against the book's loops."""
    if not bench.B.installed(backend):
        pytest.skip(f"{backend} is not installed")
    w = tiny("W5", sizes=(50, 8, 6, 50), seq=5)
    X, T = bench.make_data(w)
    a = lstm.NumpyLSTMTextbook(w, X, T)
    b = lstm.XPNetLSTM(w, X, T, "numpy") if backend == "numpy" else lstm.XPNetLSTMCompiled(w, X, T, "jax")
    for i in (0, 1):
        a.step(i)
        b.step(i)
    b.sync()
    for mine, key in zip(a.params, ("W1", "Wx1", "Wh1", "b1", "W2", "b2"), strict=True):
        np.testing.assert_allclose(mine, np.asarray(b.model.params[key]), rtol=1e-4, atol=1e-7)


def test_lstm_xpnet_refuses_word_ids_outside_the_vocabulary():
    from xpnet.errors import DataError

    w = tiny("W5", sizes=(50, 8, 6, 50), seq=5)
    X, T = bench.make_data(w)
    X[3, 2] = 50
    with pytest.raises(DataError, match=r"word ids must lie in \[0, 50\), got 0\.\.50"):
        lstm.XPNetLSTM(w, X, T, "numpy")


def test_rows_that_cannot_be_built_read_not_available(monkeypatch):
    monkeypatch.setattr(convnet, "conv_module", lambda: None)
    w = tiny("W4")
    X, T = bench.make_data(w)
    errors: dict = {}
    out = bench.contenders_for(w, X, T, ["numpy"], False, errors)
    assert "numpy textbook" in [c.name for c in out] and "xpnet[numpy]" not in [c.name for c in out]
    assert errors["W4 xpnet[numpy]"] == "not available: this installation has no xpnet.conv (Convolution, Pooling)"
    timings = bench.measure(w, out, 1, 1, errors)
    text = bench.table({"cpu": {"W4": {"workload": w.title, "timings": timings, "floor_epoch_s": 0.01}},
                        "errors": errors, "notes": [],
                        "targets": bench.targets({"W4": {"timings": timings}}, None)})
    assert "| W4 | xpnet[numpy] | not available | - |" in text
    assert "| W4: xpnet[numpy] at most 0.5x numpy textbook | not measured (no xpnet[numpy] row) | n/a |" in text


def test_quick_run_of_w4_and_w5(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    rc = bench.main(["--quick", "--backends", "numpy", "--workloads", "W4,W5", "--no-memory", "--repeats", "1",
                     "--json", str(out), "--markdown", str(md)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert set(result["cpu"]) == {"W4", "W5"}
    w4 = result["cpu"]["W4"]["timings"]
    assert {"numpy textbook", "xpnet[numpy]"} | ({"torch native"} if HAVE_TORCH else set()) <= set(w4)
    assert {"numpy textbook", "xpnet[numpy]"} <= set(result["cpu"]["W5"]["timings"])
    for res in result["cpu"].values():
        assert res["floor_epoch_s"] > 0
        for t in res["timings"].values():
            assert t["epoch_s"] > 0 and len(t["samples_s"]) == 1 and 0 < t["cpu_per_wall"] <= 1.1
    names = [t["target"] for t in result["targets"]]
    assert "W4: xpnet[numpy] at most 0.5x numpy textbook" in names
    assert "W5: xpnet[numpy] at most 1.2x torch native" in names
    text = md.read_text()
    assert "| W4 | numpy textbook |" in text and "| W5 | floor (FLOPs / matmul rate) |" in text
