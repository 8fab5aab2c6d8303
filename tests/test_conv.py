"""Convolution, Pooling and Flatten: the textbook's loops as the oracle, on every backend; gradient
checks; convolutional models through checkpoints, the compiled step and ONNX; bad input refused."""

import json

import numpy as np
import pytest
import reference as ref
from conftest import assert_close

import xpnet
from xpnet import checkpoint as C
from xpnet.errors import CheckpointError, ConfigError, ShapeError

# (stride, pad, FH, FW, H, W): strides 1-2, pads 0-2, square and non-square windows and images
GEOMETRIES = [(1, 0, 3, 3, 5, 6), (2, 1, 3, 2, 7, 6), (2, 2, 2, 3, 5, 5), (1, 1, 2, 4, 4, 5)]


def _gradcheck_args(be):
    """(dtype, eps, bound) for gradient checks on this row: float64 where the device has it."""
    return ("float64", 1e-5, 1e-6) if be.supports_float64 else ("float32", 1e-2, 5e-2)


def test_im2col_and_col2im_equal_the_books_loops(be, rng):
    for s, p, fh, fw, h, w in GEOMETRIES:
        x = rng.standard_normal((2, 3, h, w))
        col = ref.im2col(x, fh, fw, s, p)
        assert_close(xpnet.im2col(be.asarray(x), fh, fw, s, p), col, be)
        dcol = rng.standard_normal(col.shape)
        assert_close(xpnet.col2im(be.asarray(dcol), x.shape, fh, fw, s, p), ref.col2im(dcol, x.shape, fh, fw, s, p), be)


def test_convolution_forward_backward_equal_the_book(be, rng):
    for s, p, fh, fw, h, w in GEOMETRIES:
        x, W, b = rng.standard_normal((2, 3, h, w)), rng.standard_normal((4, 3, fh, fw)), rng.standard_normal(4)
        layer = xpnet.Convolution(be.asarray(W), be.asarray(b), stride=s, pad=p)
        out = ref.conv_forward(x, W, b, s, p)
        assert_close(layer.forward(be.asarray(x)), out, be)
        dout = rng.standard_normal(out.shape)
        dx, dW, db = ref.conv_backward(x, W, dout, s, p)
        assert_close(layer.backward(be.asarray(dout)), dx, be)
        assert_close(layer.grads["W"], dW, be)
        assert_close(layer.grads["b"], db, be)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_forward_backward_equal_the_book(be, rng, mode):
    for s, p, fh, fw, h, w in GEOMETRIES:
        stride = None if s == 1 and fh == fw else s  # None: windows side by side
        layer = xpnet.Pooling(fh, fw, stride=stride, pad=p, mode=mode)
        sh, sw = layer.strides
        if fh > h + 2 * p:
            continue
        x = rng.standard_normal((2, 3, h, w))
        out, _ = ref.pool_forward(x, fh, fw, sh, sw, p, mode)
        assert_close(layer.forward(be.asarray(x)), out, be)
        dout = rng.standard_normal(out.shape)
        assert_close(layer.backward(be.asarray(dout)), ref.pool_backward(x, dout, fh, fw, sh, sw, p, mode), be)


def test_max_pooling_ties_send_the_gradient_to_the_first_maximum(be, rng):
    x = np.zeros((1, 2, 4, 4))
    x[0, 1, 1, 1] = x[0, 1, 1, 0] = 1.0  # a tie of ones in a window, zeros (ties) everywhere else
    layer = xpnet.Pooling(2, 2)
    dout = rng.standard_normal((1, 2, 2, 2))
    assert_close(layer.forward(be.asarray(x)), ref.pool_forward(x, 2, 2, 2, 2)[0], be)
    dx = ref.pool_backward(x, dout, 2, 2, 2, 2)
    assert dx[0, 1, 1, 0] == dout[0, 1, 0, 0] and dx[0, 1, 1, 1] == 0  # the first of the tied ones
    assert dx[0, 0, 0, 0] == dout[0, 0, 0, 0] and dx[0, 0, 0, 1] == 0  # all zeros: the window's first
    assert_close(layer.backward(be.asarray(dout)), dx, be)


def test_flatten_reshapes_forward_and_back(be, rng):
    x, dout = rng.standard_normal((2, 3, 2, 4)), rng.standard_normal((2, 24))
    layer = xpnet.Flatten()
    assert_close(layer.forward(be.asarray(x)), x.reshape(2, 24), be)
    assert_close(layer.backward(be.asarray(dout)), dout.reshape(x.shape), be)


TINY_INPUT = (1, 6, 5)  # one sample's shape for the tiny CNN; batches of 3 everywhere (jax compiles each shape once)


def _tiny_cnn(be):
    """Convolution (stride 2, pad 1, 3x2) - max-pool (stride 1) - ReLU - Convolution (pad 1) - avg-pool (pad 1) -
    Flatten - Affine: (1, 6, 5) -> (2, 3, 3) -> (2, 2, 2) -> (2, 3, 3) -> (2, 2, 2) -> 8 -> 3."""
    rng = np.random.default_rng(5)
    layers = [xpnet.Convolution.create(1, 2, (3, 2), stride=2, pad=1, rng=rng, backend=be),
              xpnet.Pooling(2, 2, stride=1), xpnet.ReLU(),
              xpnet.Convolution.create(2, 2, 2, pad=1, rng=rng, backend=be),
              xpnet.Pooling(2, 2, pad=1, mode="avg"), xpnet.Flatten(), xpnet.Affine.create(8, 3, rng=rng, backend=be)]
    return xpnet.Sequential(layers, input_shape=TINY_INPUT)


def _batch(seed=0, n=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *TINY_INPUT)), rng.integers(0, 3, n)


def test_cnn_gradient_check_every_parameter_and_the_input(be, rng):
    model = _tiny_cnn(be)
    x, t = (be.asarray(a) for a in _batch())
    dtype, eps, bound = _gradcheck_args(be)
    report = model.gradient_check(x, t, eps=eps, dtype=dtype)
    assert set(report) == {"W1", "b1", "W2", "b2", "W3", "b3", "x"}
    assert max(report.values()) < bound, report


def test_first_convolution_skips_dx_with_the_same_parameter_gradients(be, rng):
    model = _tiny_cnn(be)
    x, t = (be.asarray(a) for a in _batch())
    model.loss(x, t)
    assert model.backward(input_grad=True) is not None
    full = {k: xpnet.to_numpy(v) for k, v in model.grads.items()}
    model.loss(x, t)
    assert model.backward(input_grad=False) is None
    for k, v in model.grads.items():
        np.testing.assert_array_equal(xpnet.to_numpy(v), full[k], err_msg=k)


def test_simple_cnn_is_the_books_chapter_7_network(be):
    model = xpnet.simple_cnn(backend=be)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Convolution", "ReLU", "Pooling", "Flatten", "Affine", "ReLU", "Affine"]
    assert tuple(model.params["W1"].shape) == (30, 1, 5, 5) and tuple(model.params["W2"].shape) == (30 * 12 * 12, 100)
    assert (model.in_features, model.out_features, model.input_shape) == (784, 10, (1, 28, 28))
    expected = np.random.default_rng(0).standard_normal((30, 1, 5, 5)) * np.sqrt(2 / 25)  # He over C*FH*FW
    assert_close(model.params["W1"], expected, be)


def test_deep_cnn_is_the_books_chapter_8_network():
    model = xpnet.deep_cnn(backend="numpy")
    convs = [layer for layer in model.layers if isinstance(layer, xpnet.Convolution)]
    shapes = [tuple(c.params["W"].shape[:2]) for c in convs]
    assert shapes == [(16, 1), (16, 16), (32, 16), (32, 32), (64, 32), (64, 64)]
    assert [c.pad for c in convs] == [1, 1, 1, 2, 1, 1]
    assert tuple(model.params["W7"].shape) == (64 * 4 * 4, 50)
    assert [type(layer).__name__ for layer in model.layers[-5:]] == ["Affine", "ReLU", "Dropout", "Affine", "Dropout"]
    assert model.predict(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


@pytest.fixture(scope="module")
def saved_cnn(tmp_path_factory):
    """A tiny float64 CNN saved as .npz and .safetensors, and a batch to predict."""
    pytest.importorskip("safetensors", reason="safetensors is not installed (pip install 'xpnet[export]')")
    from xpnet import export

    model = xpnet.simple_cnn(TINY_INPUT, filters=2, size=3, hidden=5, classes=4, seed=2,
                             backend="numpy", dtype="float64")
    folder = tmp_path_factory.mktemp("cnn")
    paths = [C.save(folder / "m.npz", model), export.save_safetensors(folder / "m.safetensors", model)]
    x = _batch(1)[0]
    return model, paths, x


def test_cnn_checkpoint_round_trip_gives_identical_predictions(be, saved_cnn):
    model, paths, x = saved_cnn
    for path in paths:
        loaded, _, _ = C.load(path, backend=be.name, device=be.device, dtype=be.dtype_name)
        assert loaded.input_shape == TINY_INPUT
        want = model.predict(x)
        got = loaded.predict(be.asarray(x))
        if be.name == "numpy" and be.dtype_name == "float64":
            np.testing.assert_array_equal(got, want)  # bit for bit
        assert_close(got, want, be)


def test_hand_edited_cnn_checkpoint_is_refused(saved_cnn, tmp_path):
    import io
    import json
    import zipfile

    _, paths, _ = saved_cnn
    with np.load(paths[0]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    desc = json.loads(arrays["__xpnet__"].tobytes())
    for edit, says in [(lambda d: d.update(input_shape=[3, 6, 5]), "channel"),
                       (lambda d: d.update(input_shape=[1, 2, 2]), "window"),
                       (lambda d: d["layers"][2]["config"].update(mode="median"), "mode")]:
        d = json.loads(json.dumps(desc))
        edit(d)
        buf = io.BytesIO()
        np.savez(buf, **{**arrays, "__xpnet__": np.frombuffer(json.dumps(d).encode(), np.uint8)})
        bad = tmp_path / "bad.npz"
        bad.write_bytes(buf.getvalue())
        assert zipfile.is_zipfile(bad)
        with pytest.raises(CheckpointError, match=says):
            C.load(bad)


def test_compiled_cnn_step_equals_eager_float64():
    pytest.importorskip("jax", reason="jax is not installed (pip install 'xpnet[jax]')")
    bj, bn = xpnet.get_backend("jax", dtype="float64"), xpnet.get_backend("numpy", dtype="float64")
    mj, mn = _tiny_cnn(bj), _tiny_cnn(bn)
    oj, on = xpnet.get_optimizer("adam", 0.01), xpnet.get_optimizer("adam", 0.01)
    step = xpnet.compile_step(mj, oj)
    assert step.compiled
    x, t = _batch(n=9)
    for i in range(3):
        xb, tb = x[i * 3:(i + 1) * 3], t[i * 3:(i + 1) * 3]
        loss = float(xpnet.to_numpy(step(bj.asarray(xb), bj.asarray(tb))))
        eager = float(mn.loss(bn.asarray(xb), bn.asarray(tb), check=False))
        mn.backward(input_grad=False)
        on.update(mn.params, mn.grads)
        assert abs(loss - eager) < 1e-10, (i, loss, eager)
    for k in mn.params:
        np.testing.assert_allclose(xpnet.to_numpy(mj.params[k]), mn.params[k], rtol=1e-10, atol=1e-10, err_msg=k)


@pytest.fixture(scope="module")
def numpy_curve():
    return _curve(xpnet.get_backend("numpy", dtype="float64"))


def _curve(be) -> list:
    """The losses of two SGD steps of the tiny CNN, and the loss after them."""
    model, opt = _tiny_cnn(be), xpnet.SGD(lr=0.1)
    x, t = (be.asarray(a) for a in _batch(3))
    losses = []
    for _ in range(2):
        losses.append(float(xpnet.to_numpy(model.loss(x, t))))
        model.backward(input_grad=False)
        opt.update(model.params, model.grads)
    return losses + [float(xpnet.to_numpy(model.loss(x, t)))]


def test_cnn_loss_curve_is_the_same_on_every_backend(be, numpy_curve):
    tol = 1e-10 if be.dtype_name == "float64" else 1e-4
    np.testing.assert_allclose(_curve(be), numpy_curve, rtol=tol, atol=tol)
    assert numpy_curve[-1] < numpy_curve[0]  # the steps learn


def test_cnn_onnx_export_gives_the_same_classes(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'xpnet[export]')")
    from xpnet import export

    model = _tiny_cnn(xpnet.get_backend("numpy", dtype="float32"))
    model.layers.insert(2, xpnet.Pooling(2, 1, stride=1, pad=1))  # a padded max-pool: (2, 3, 4), Pad then MaxPool
    model.layers[-1] = xpnet.Affine.create(2 * 3 * 3, 3, rng=1, backend="numpy")
    proto = export.to_onnx(model)
    ops = [n.op_type for n in proto.graph.node]
    for op in ("Conv", "MaxPool", "AveragePool", "Flatten", "Pad"):
        assert op in ops, ops
    x = np.random.default_rng(4).standard_normal((16, *TINY_INPUT)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"x": x})[0]
    want = model.predict(x)
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(scores.argmax(axis=1), want.argmax(axis=1))


# ---------------------------------------------------------------------- bad input
def test_bad_images_and_settings_get_clear_errors(be, rng):
    W, b = be.asarray(rng.standard_normal((4, 3, 3, 3))), be.asarray(np.zeros(4))
    layer = xpnet.Convolution(W, b)
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        layer.forward(be.asarray(rng.standard_normal((2, 27))))
    with pytest.raises(ShapeError, match="expects 3 channel"):
        layer.forward(be.asarray(rng.standard_normal((2, 1, 5, 5))))
    with pytest.raises(ShapeError, match="does not fit an input of 2"):
        layer.forward(be.asarray(rng.standard_normal((2, 3, 2, 5))))
    with pytest.raises(ShapeError, match="does not fit"):
        xpnet.Pooling(3, 3).forward(be.asarray(rng.standard_normal((1, 1, 2, 2))))
    with pytest.raises(ShapeError, match="W of shape"):
        xpnet.Convolution(be.asarray(rng.standard_normal((4, 3, 3))), b)
    with pytest.raises(ShapeError, match="col of shape"):
        xpnet.col2im(be.asarray(rng.standard_normal((5, 5))), (1, 1, 4, 4), 2, 2)


@pytest.mark.parametrize("make, says", [
    (lambda: xpnet.Convolution.create(1, 2, 3, stride=1.5, backend="numpy"), "stride must be an integer >= 1"),
    (lambda: xpnet.Convolution.create(1, 2, 3, pad=-1, backend="numpy"), "pad must be an integer >= 0"),
    (lambda: xpnet.Convolution.create(1, 0, 3, backend="numpy"), "filters must be an integer >= 1"),
    (lambda: xpnet.Pooling(2, 2, stride=0), "stride must be an integer >= 1"),
    (lambda: xpnet.Pooling(2, 2, mode="median"), "mode must be one of max, avg"),
    (lambda: xpnet.Pooling("2", 2), "pool_h must be an integer"),
    (lambda: xpnet.im2col(np.zeros((1, 1, 4, 4)), 2, 2, stride=True), "stride must be an integer"),
    (lambda: xpnet.simple_cnn((1, 4, 4), size=5), "does not fit"),
    (lambda: xpnet.simple_cnn((64,)), r"\(channels, height, width\)"),
    (lambda: xpnet.deep_cnn((1, 1, 1)), "does not fit"),
])
def test_nonsense_settings_are_config_errors(make, says):
    with pytest.raises(ConfigError, match=says):
        make()


def test_a_cnn_model_holds_inputs_to_its_image_shape():
    model = xpnet.simple_cnn((1, 8, 8), filters=2, size=3, hidden=4, backend="numpy")
    flat = np.zeros((3, 64), np.float32)
    with pytest.raises(ShapeError, match=r"images of shape \(N, 1, 8, 8\).*reshape_input"):
        model.predict(flat)
    assert model.predict(model.reshape_input(flat)).shape == (3, 10)
    with pytest.raises(ShapeError, match=r"\(N, 64\)"):
        model.reshape_input(np.zeros((3, 65)))
    mlp = xpnet.mlp([64, 5, 10], backend="numpy")
    assert mlp.reshape_input(flat) is flat and mlp.input_shape is None
    assert "input_shape" not in C.describe(mlp)  # MLP checkpoints are written as before


# ---------------------------------------------------------------------- the command line
def _cli(argv, capsys):
    from xpnet import cli

    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """One epoch of ``xpnet train --model simple-cnn`` on the digits (eager, no plot)."""
    from xpnet import cli

    out = tmp_path_factory.mktemp("cnn-run")
    code = cli.main(["train", "--model", "simple-cnn", "--epochs", "1", "--batch-size", "256", "--out", str(out),
                     "--no-plot", "-q", "--compile", "off"])
    assert code == 0
    return out / "checkpoint.npz"


def test_cli_trains_a_cnn_on_digit_images_and_records_it(cnn_run, capsys):
    desc = C.describe_file(cnn_run)
    assert desc["meta"]["model"] == "simple-cnn" and desc["input_shape"] == [1, 8, 8]
    assert [entry["type"] for entry in desc["layers"]][:4] == ["Convolution", "ReLU", "Pooling", "Flatten"]
    assert desc["layers"][0]["params"]["W"] == [30, 1, 3, 3]
    code, out, err = _cli(["eval", str(cnn_run), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["test_acc"] > 0.5 and json.loads(out)["samples"] == 359


def test_cli_predict_takes_images_or_flat_rows_and_refuses_other_shapes(cnn_run, capsys, tmp_path):
    from xpnet import datasets

    raw = datasets.digits().x_test_raw[:4]
    outputs = []
    for name, x in (("flat", raw), ("images", raw.reshape(4, 1, 8, 8))):
        np.save(tmp_path / f"{name}.npy", x)
        code, out, err = _cli(["predict", str(cnn_run), str(tmp_path / f"{name}.npy")], capsys)
        assert code == 0, err
        outputs.append(out)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 4
    np.save(tmp_path / "bad.npy", raw.reshape(4, 8, 8))
    code, _, err = _cli(["predict", str(cnn_run), str(tmp_path / "bad.npy")], capsys)
    assert code == 1 and "(N, 1, 8, 8) or (N, 64)" in err and "Traceback" not in err


def test_cli_resume_keeps_the_cnn(cnn_run, capsys, tmp_path):
    import shutil

    ckpt = tmp_path / "checkpoint.npz"
    shutil.copy(cnn_run, ckpt)
    code, _, err = _cli(["train", "--resume", str(ckpt), "--model", "mlp", "-q", "--no-plot"], capsys)
    assert code == 1 and "model='mlp' cannot be changed" in err
    code, out, err = _cli(["train", "--resume", str(ckpt), "--epochs", "2", "-q", "--no-plot", "--compile", "off"],
                          capsys)
    assert code == 0, err
    assert C.describe_file(ckpt)["meta"]["epoch"] == 2 and C.describe_file(ckpt)["meta"]["model"] == "simple-cnn"


@pytest.mark.parametrize("argv, says", [
    (["--model", "cnn"], "invalid choice: 'cnn'"),
    (["--model", "simple-cnn", "--hidden", "10"], "--hidden applies to --model mlp only"),
    (["--model", "deep-cnn", "--activation", "tanh"], "--activation applies to --model mlp only"),
    (["--model", "simple-cnn", "--batchnorm"], "unrecognized arguments: --batchnorm"),
    (["--model", "deep-cnn", "--dataset", "iris"], "iris has flat features"),
])
def test_cli_nonsense_with_a_cnn_is_a_usage_error(argv, says, capsys, tmp_path):
    code, _, err = _cli(["train", *argv, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and says in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
