"""Export: ONNX graphs checked by onnx.checker and run in onnxruntime, safetensors read by plain PyTorch
and by xpnet itself (eval, predict, train --resume), clear errors for what cannot be exported."""

import json
import math
import sys

import numpy as np
import pytest
from conftest import tally
from procs import run as run_process

import xpnet
from xpnet import backend as B
from xpnet import checkpoint as C
from xpnet import cli, datasets
from xpnet import export as E
from xpnet import layers as L

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'xpnet[export]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'xpnet[export]')")
safetensors = pytest.importorskip("safetensors", reason="safetensors is not installed (pip install 'xpnet[export]')")


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def session_scores(proto_or_path, x):
    src = proto_or_path.SerializeToString() if hasattr(proto_or_path, "SerializeToString") else str(proto_or_path)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, {E.INPUT: x})[0]


def raw_test_features(data):
    """The test features in the dataset's own units (what ``xpnet predict`` reads)."""
    s = data.scaler
    return data.x_test.reshape(data.x_test.shape[0], -1) * np.asarray(s.divisor) + np.asarray(s.offset)


def xpnet_scores(model, data, raw):
    """What ``xpnet predict`` computes from raw features: scale in float64 on the host, then the model."""
    ref = next(iter(model.params.values()))
    x = B.from_host_like(data.scaler(raw).astype(B.host_dtype(ref.dtype)), ref)
    return B.to_numpy(model.predict(x, train=False))


def assert_same_scores(got, want, rtol):
    """Relative agreement (scaled by the largest score) and the same class for every sample."""
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)
    if want.shape[1] > 1:
        assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))


def meta_of(data):
    return {"dataset": data.name, "scaler": data.scaler.to_json(), "class_names": data.class_names}


# ---------------------------------------------------------------------- models with every layer type
def stack(kind, n_in, n_out, be, rng):
    """Layers of one kind of network (each exportable layer type appears in at least one)."""
    if kind == "relu":
        return xpnet.mlp([n_in, 32, n_out], "relu", seed=1, backend=be).layers
    if kind == "batchnorm-tanh-dropout":
        return xpnet.mlp([n_in, 32, 16, n_out], "tanh", batchnorm=True, dropout=0.3, seed=2, backend=be).layers
    if kind == "sigmoid-matmul-softmax":
        w = be.asarray(rng.standard_normal((24, 24)) * 0.3)
        return [L.Affine.create(n_in, 24, "xavier", rng, be), L.Sigmoid(), L.MatMul(w), L.Softmax(),
                L.Affine.create(24, n_out, "xavier", rng, be)]
    raise AssertionError(kind)


def fit(model, data, be, epochs, seed=0, batch=64):
    opt = xpnet.get_optimizer("adam", 0.01)
    x = be.asarray(data.x_train.reshape(data.x_train.shape[0], -1))
    t = be.asarray(data.t_train)
    order = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = order.permutation(x.shape[0])
        for i in range(0, x.shape[0], batch):
            idx = be.xp.asarray(perm[i:i + batch], device=be.device)
            opt.update(model.params, model.gradient(be.xp.take(x, idx, axis=0), be.xp.take(t, idx, axis=0)))
    return model, opt


KINDS = ("relu", "batchnorm-tanh-dropout", "sigmoid-matmul-softmax")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dataset", ["digits", "iris"])
@pytest.mark.parametrize("trained_on", ["numpy", "torch"])
def test_onnxruntime_gives_the_scores_of_model_predict(trained_on, dataset, kind, tmp_path):
    if not B.installed(trained_on):
        pytest.skip(f"{trained_on} is not installed ({B.INSTALL_HINT[trained_on]})")
    be = B.resolve(trained_on, dtype="float32")
    data = datasets.load(dataset)
    rng = np.random.default_rng(3)
    model, opt = fit(xpnet.Sequential(stack(kind, data.num_features, data.num_classes, be, rng)), data, be,
                     epochs=16 if dataset == "iris" else 3)
    path = C.save(tmp_path / "c.npz", model, opt, meta_of(data))
    out = E.export(path, "onnx")["path"]
    assert out == tmp_path / "c.onnx"
    onnx.checker.check_model(onnx.load(out), full_check=True)
    raw = raw_test_features(data)
    want = xpnet_scores(model, data, raw)
    got = session_scores(out, raw.astype(np.float32))
    assert got.dtype == np.float32 and got.shape == (data.x_test.shape[0], data.num_classes)
    assert_same_scores(got, want, rtol=1e-5)
    assert (want.argmax(axis=1) == data.t_test).mean() > 0.5  # a trained model, not noise


def test_export_from_every_backend_row(be, tmp_path, rng):
    """The graph is built from host copies: any backend and device, float32 or float64."""
    data = datasets.load("iris")
    # one step on the whole training set moves every weight and BatchNorm statistic off its start (on
    # jax each batch shape compiles every operation anew)
    model, _ = fit(xpnet.Sequential(stack("batchnorm-tanh-dropout", 4, 3, be, rng)), data, be, epochs=1,
                   batch=data.x_train.shape[0])
    proto = E.to_onnx(model, meta_of(data))
    raw = raw_test_features(data)
    got = session_scores(proto, raw.astype(be.dtype_name))
    assert got.dtype == np.dtype(be.dtype_name)
    assert_same_scores(got, xpnet_scores(model, data, raw), rtol=1e-5 if be.dtype_name == "float32" else 1e-10)


def test_graph_is_checked_dynamic_in_batch_and_carries_metadata(tmp_path):
    data = datasets.load("digits")
    model = xpnet.mlp([64, 16, 10], seed=0, dtype="float32", backend="numpy")
    proto = E.to_onnx(model, {**meta_of(data), "xpnet_version": "0.0.9"})
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == E.OPSET and proto.ir_version == E.IR_VERSION
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [64]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["dataset"] == "digits" and json.loads(props["class_names"]) == [str(i) for i in range(10)]
    assert props["xpnet_version"] == xpnet.__version__ and props["name"] == "xpnet digits 64-16-10"
    assert json.loads(props["scaler"]) == data.scaler.to_json() and props["output"] == "scores"
    raw = raw_test_features(data)
    for n in (1, 7, raw.shape[0]):
        assert_same_scores(session_scores(proto, raw[:n].astype(np.float32)),
                           xpnet_scores(model, data, raw[:n]), rtol=1e-5)


def test_dropout_is_its_evaluation_form_not_an_identity():
    be = B.resolve("numpy", dtype="float64")
    layers = [L.Affine(be.asarray(np.eye(3)), be.zeros((3,))), L.Dropout(0.25)]
    proto = E.to_onnx(xpnet.Sequential(layers))
    x = np.array([[1.0, -2.0, 4.0]])
    assert np.array_equal(session_scores(proto, x), x * 0.75)


def test_batchnorm_uses_its_running_statistics_and_eps():
    be = B.resolve("numpy", dtype="float64")
    bn = L.BatchNormalization(be.asarray([2.0, 0.5]), be.asarray([1.0, -1.0]), running_mean=be.asarray([3.0, -1.0]),
                              running_var=be.asarray([4.0, 0.0]), eps=0.01)
    proto = E.to_onnx(xpnet.Sequential([bn]))
    x = np.array([[5.0, 1.0], [3.0, -1.0]])
    want = np.array([[2.0, 0.5]]) * (x - [3.0, -1.0]) / np.sqrt(np.array([4.0, 0.0]) + 0.01) + [1.0, -1.0]
    np.testing.assert_allclose(session_scores(proto, x), want, rtol=1e-14)


def test_images_in_their_own_shape_are_flattened_as_affine_does():
    data = datasets.load("digits")
    be = B.resolve("numpy", dtype="float32")
    model, _ = fit(xpnet.mlp([64, 16, 10], batchnorm=True, seed=0, backend=be), data, be, epochs=1)
    raw = raw_test_features(data)
    images = E.to_onnx(model, meta_of(data), input_shape=(8, 8))
    flat = E.to_onnx(model, meta_of(data))
    got = session_scores(images, raw.reshape(-1, 8, 8).astype(np.float32))
    assert np.array_equal(got, session_scores(flat, raw.astype(np.float32)))
    assert_same_scores(got, xpnet_scores(model, data, raw), rtol=1e-5)


def test_probabilities_end_with_softmax_or_sigmoid():
    be = B.resolve("numpy", dtype="float64")
    data = datasets.load("iris")
    model, _ = fit(xpnet.mlp([4, 8, 3], seed=0, backend=be), data, be, epochs=2)
    raw = raw_test_features(data)
    p = session_scores(E.to_onnx(model, meta_of(data), probabilities=True), raw)
    s = xpnet_scores(model, data, raw)
    np.testing.assert_allclose(p, B.to_numpy(xpnet.softmax(be.asarray(s))), rtol=1e-12)
    binary = xpnet.mlp([4, 8, 1], seed=0, loss="sigmoid", backend=be)
    proto = E.to_onnx(binary, meta_of(data), probabilities=True)
    assert proto.graph.output[0].name == "probabilities"
    s = xpnet_scores(binary, data, raw)
    np.testing.assert_allclose(session_scores(proto, raw), 1 / (1 + np.exp(-s)), rtol=1e-12)
    regression = xpnet.mlp([4, 8, 2], seed=0, loss="mse", backend=be)
    with pytest.raises(E.ExportError, match="MeanSquaredError outputs values, not probabilities"):
        E.to_onnx(regression, probabilities=True)


# ---------------------------------------------------------------------- float64 into float32, refusals
def test_float64_model_as_float32_graph_is_a_rounding_with_a_note(tmp_path, capsys):
    be = B.resolve("numpy", dtype="float64")
    data = datasets.load("digits")
    model, opt = fit(xpnet.mlp([64, 32, 10], batchnorm=True, dropout=0.2, seed=0, backend=be), data, be, epochs=2)
    path = C.save(tmp_path / "c.npz", model, opt, meta_of(data))
    code, out, err = run(["export", path, "--format", "onnx", "--out", tmp_path / "f64.onnx"], capsys)
    assert code == 0 and err == "" and "float64" in out
    code, out, err = run(["export", path, "--format", "onnx", "--dtype", "float32", "--out", tmp_path / "f32.onnx"],
                         capsys)
    assert code == 0 and "note: the float64 weights were rounded to float32" in err
    raw = raw_test_features(data)
    want = xpnet_scores(model, data, raw)
    assert_same_scores(session_scores(tmp_path / "f64.onnx", raw), want, rtol=1e-10)
    got = session_scores(tmp_path / "f32.onnx", raw.astype(np.float32))
    assert got.dtype == np.float32
    assert_same_scores(got, want, rtol=1e-5)


@pytest.mark.parametrize("value, needle", [(1e39, "beyond float32's range"), (math.nan, "NaN or inf"),
                                           (math.inf, "NaN or inf")])
def test_weights_that_do_not_fit_are_refused(value, needle, tmp_path, capsys):
    be = B.resolve("numpy", dtype="float64")
    model = xpnet.mlp([4, 3, 2], seed=0, backend=be)
    model.params["W2"][0, 0] = value
    path = C.save(tmp_path / "c.npz", model, None, {})
    code, out, err = run(["export", path, "--format", "onnx", "--dtype", "float32"], capsys)
    assert code == 1 and needle in err and "W of layer 2 (Affine)" in err and "Traceback" not in err
    assert not (tmp_path / "c.onnx").exists()
    tally("hostile inputs", 1)


@pytest.mark.parametrize("layer", [L.Repeat(3), L.Sum()])
def test_a_layer_with_no_onnx_form_is_refused_by_name(layer, tmp_path, capsys):
    be = B.resolve("numpy", dtype="float32")
    model = xpnet.Sequential([L.MatMul(be.asarray(np.ones((2, 2)))), layer])
    path = C.save(tmp_path / "c.npz", model, None, {})
    code, _, err = run(["export", path, "--format", "onnx"], capsys)
    assert code == 1 and f"layer 1 ({type(layer).__name__}) has no ONNX form" in err and "Affine" in err
    assert not (tmp_path / "c.onnx").exists()
    tally("hostile inputs", 1)


@pytest.mark.parametrize("meta, shape, needle", [
    ({"scaler": {"kind": "minmax", "offset": [0.0] * 3, "divisor": [1.0]}}, None, "offset has 3 value(s)"),
    ({"scaler": {"kind": "minmax", "offset": [0.0], "divisor": [0.0]}}, None, "none of them 0"),
    ({"scaler": {"kind": "minmax", "offset": [math.nan], "divisor": [1.0]}}, None, "finite numbers"),
    ({"scaler": {"kind": "minmax", "offset": ["a"], "divisor": [1.0]}}, None, "scaler is unreadable"),
    ({"scaler": {"kind": "minmax"}}, None, "scaler is unreadable"),
    ({}, (3, 3), "input_shape (3, 3) gives 9 features to Affine, which takes 4"),
])
def test_a_scaler_or_input_shape_that_does_not_fit_is_refused(meta, shape, needle, tmp_path, capsys):
    model = xpnet.mlp([4, 3, 2], seed=0, backend=B.resolve("numpy", dtype="float32"))
    with pytest.raises(E.ExportError) as err:
        E.to_onnx(model, meta, input_shape=shape)
    assert needle in str(err.value) and isinstance(err.value, ValueError)
    if shape is None:  # the same through the command line: a sentence, exit 1, no file
        path = C.save(tmp_path / "c.npz", model, None, meta)
        code, _, stderr = run(["export", path, "--format", "onnx"], capsys)
        assert code == 1 and needle in stderr and not (tmp_path / "c.onnx").exists()
    tally("hostile inputs", 1)


# ---------------------------------------------------------------------- safetensors
def test_safetensors_holds_what_the_npz_holds_on_every_backend_row(be, tmp_path, rng):
    model = xpnet.mlp([4, 6, 3], seed=1, backend=be, batchnorm=True, dropout=0.1)
    opt = xpnet.get_optimizer("adam", 0.01)
    x, t = be.asarray(rng.random((8, 4))), be.asarray(np.arange(8) % 3)
    for _ in range(2):
        opt.update(model.params, model.gradient(x, t))
    npz = C.save(tmp_path / "c.npz", model, opt, {"epoch": 2, "nan": math.nan})
    st = E.save_safetensors(tmp_path / "c.safetensors", model, opt, {"epoch": 2, "nan": math.nan})
    d1, a1 = C.read(npz)
    d2, a2 = C.read(st)
    assert json.dumps(d1) == json.dumps(d2) and sorted(a1) == sorted(a2)
    assert {"param/W1", "state/running_mean1", "state/running_var1", "opt/m/W1", "opt/v/gamma1"} <= set(a2)
    for k in a1:
        assert a1[k].dtype == a2[k].dtype and a1[k].tobytes() == a2[k].tobytes(), k
    m2, o2, meta = C.load(st, backend=be)
    assert meta["epoch"] == 2 and o2.state["step"] == 2
    for k in model.params:
        assert np.array_equal(B.to_numpy(m2.params[k]), B.to_numpy(model.params[k]))


def test_plain_pytorch_reads_the_safetensors_file_and_predicts_the_same_classes(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from safetensors import safe_open
    from safetensors.torch import load_file

    be = B.resolve("numpy", dtype="float32")
    data = datasets.load("digits")
    model, opt = fit(xpnet.mlp([64, 32, 10], batchnorm=True, dropout=0.2, seed=0, backend=be), data, be, epochs=3)
    path = E.save_safetensors(tmp_path / "model.safetensors", model, opt, meta_of(data))
    raw = raw_test_features(data)

    # no xpnet below: the weights and the JSON description, read by safetensors and torch alone
    w = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        desc = json.loads(f.metadata()["__xpnet__"])
    s = desc["meta"]["scaler"]
    x = (torch.tensor(raw) - torch.tensor(s["offset"])) / torch.tensor(s["divisor"])
    x = x.to(torch.float32)
    count = {}
    for layer in desc["layers"]:
        n = {k: count.setdefault(k, 0) + 1 for k in layer["params"]}
        count.update(n)
        p = {k: w[f"param/{k}{i}"] for k, i in n.items()}
        if layer["type"] == "Affine":
            x = x.flatten(1) @ p["W"] + p["b"]
        elif layer["type"] == "BatchNormalization":
            i = n["gamma"]
            x = torch.nn.functional.batch_norm(x, w[f"state/running_mean{i}"], w[f"state/running_var{i}"],
                                               p["gamma"], p["beta"], False, eps=layer["config"]["eps"])
        elif layer["type"] == "ReLU":
            x = torch.relu(x)
        elif layer["type"] == "Dropout":
            x = x * (1 - layer["config"]["ratio"])
        else:
            raise AssertionError(layer["type"])
    want = xpnet_scores(model, data, raw)
    assert np.array_equal(x.argmax(dim=1).numpy(), want.argmax(axis=1))
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.fixture(scope="module")
def float64_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = cli.main(["train", "--dataset", "iris", "--epochs", "2", "--hidden", "8", "--dtype", "float64",
                     "--quiet", "--no-plot", "--out", str(out)])
    assert code == 0
    assert cli.main(["export", str(out / "checkpoint.npz"), "--format", "safetensors"]) == 0
    return out


def test_eval_and_predict_take_safetensors_bit_for_bit(float64_run, tmp_path, capsys):
    npz, st = float64_run / "checkpoint.npz", float64_run / "checkpoint.safetensors"
    assert st.read_bytes()[8:9] == b"{"
    results = []
    for path in (npz, st):
        code, out, err = run(["eval", path, "--json"], capsys)
        assert code == 0, err
        r = json.loads(out)
        r.pop("checkpoint")
        results.append(r)
    assert results[0] == results[1]
    raw = raw_test_features(datasets.load("iris"))
    np.save(tmp_path / "x.npy", raw)
    outs = [run(["predict", path, tmp_path / "x.npy"], capsys) for path in (npz, st)]
    assert outs[0][0] == 0 and outs[0] == outs[1]
    renamed = tmp_path / "weights.bin"  # found by its content, not its name
    renamed.write_bytes(st.read_bytes())
    assert run(["predict", renamed, tmp_path / "x.npy"], capsys) == outs[0]


def test_resume_from_safetensors_continues_exactly_as_from_npz(float64_run, tmp_path, capsys):
    finals = []
    for name in ("checkpoint.npz", "checkpoint.safetensors"):
        out = tmp_path / name.split(".")[1]
        code, _, err = run(["train", "--resume", float64_run / name, "--epochs", "4", "--quiet", "--no-plot",
                            "--out", out], capsys)
        assert code == 0, err
        finals.append(C.read(out / "checkpoint.npz"))
    (d1, a1), (d2, a2) = finals
    assert d1["meta"]["epoch"] == d2["meta"]["epoch"] == 4
    assert sorted(a1) == sorted(a2) and all(a1[k].tobytes() == a2[k].tobytes() for k in a1)


# ---------------------------------------------------------------------- bad files, bad options
def _bad_files(tmp_path, good_npz, good_st):
    import safetensors.numpy as stn

    files = {}
    blob = good_npz.read_bytes()
    st = good_st.read_bytes()
    files["truncated.npz"] = blob[: len(blob) // 2]
    files["empty.npz"] = b""
    files["random.npz"] = np.random.default_rng(0).bytes(500)
    files["truncated.safetensors"] = st[: len(st) - 40]
    files["header-only.safetensors"] = st[:20]
    files["huge-header.safetensors"] = (2**60).to_bytes(8, "little") + b"{}"
    files["foreign.safetensors"] = stn.save({"weight": np.ones((2, 2))})
    files["foreign-meta.safetensors"] = stn.save({"weight": np.ones(2)}, metadata={"__xpnet__": '{"format": "x"}'})
    files["bad-json.safetensors"] = stn.save({"w": np.ones(2)}, metadata={"__xpnet__": "{not json"})
    desc, arrays = C.read(good_st)
    files["missing-param.safetensors"] = E.safetensors_bytes(desc, {k: v for k, v in arrays.items() if k != "param/W2"})
    files["wrong-shape.safetensors"] = E.safetensors_bytes(desc, {**arrays, "param/W1": np.ones((3, 3))})
    files["future.safetensors"] = E.safetensors_bytes({**desc, "format_version": 99}, arrays)
    buf = tmp_path / "foreign.npz"
    np.savez(buf, weight=np.ones(3))
    files["foreign.npz"] = buf.read_bytes()
    paths = []
    for name, data in files.items():
        p = tmp_path / "bad" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        paths.append(p)
    return paths + [tmp_path / "bad" / "absent.npz"]


@pytest.mark.parametrize("fmt", E.FORMATS)
def test_bad_checkpoints_end_in_the_errors_eval_gives(fmt, float64_run, tmp_path, capsys):
    paths = _bad_files(tmp_path, float64_run / "checkpoint.npz", float64_run / "checkpoint.safetensors")
    for path in paths:
        e_code, _, e_err = run(["eval", path], capsys)
        x_code, _, x_err = run(["export", path, "--format", fmt, "--out", tmp_path / f"out.{fmt}"], capsys)
        assert e_code == x_code == 1, (path.name, e_err, x_err)
        assert e_err.startswith("xpnet eval: error: ") and "Traceback" not in x_err
        assert x_err.replace("xpnet export:", "xpnet eval:") == e_err, path.name
        assert not (tmp_path / f"out.{fmt}").exists()
    tally("hostile inputs", len(paths))


def test_export_options_that_cannot_apply_are_refused(float64_run, tmp_path, capsys):
    npz, st = float64_run / "checkpoint.npz", float64_run / "checkpoint.safetensors"
    cases = [
        (["export", st, "--format", "safetensors"], "would overwrite the checkpoint"),
        (["export", npz, "--format", "safetensors", "--probabilities"], "onnx format only"),
        (["export", npz, "--format", "safetensors", "--dtype", "float32"], "onnx format only"),
        (["export", npz, "--format", "onnx", "--out", tmp_path], "is a folder"),
    ]
    for argv, needle in cases:
        code, _, err = run(argv, capsys)
        assert code == 1 and needle in err and "Traceback" not in err, err
    code, _, err = run(["export", npz, "--format", "tflite"], capsys)
    assert code == 2 and "onnx" in err and "safetensors" in err
    tally("hostile inputs", len(cases) + 1)


# ---------------------------------------------------------------------- without the export extra
def test_import_xpnet_imports_neither_onnx_nor_safetensors():
    code = ("import sys, xpnet, xpnet.cli, xpnet.checkpoint; bad = [m for m in ('onnx', 'onnxruntime', "
            "'safetensors') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = run_process([sys.executable, "-c", code], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("fmt, package", [("onnx", "onnx"), ("safetensors", "safetensors")])
def test_without_the_extra_export_names_the_package_and_the_rest_works(fmt, package, float64_run, tmp_path):
    """A process where onnx, onnxruntime and safetensors cannot be imported."""
    npz = float64_run / "checkpoint.npz"
    code = (
        "import sys\n"
        "for m in ('onnx', 'onnxruntime', 'safetensors'): sys.modules[m] = None\n"
        "from xpnet import cli\n"
        f"print('export', cli.main(['export', {str(npz)!r}, '--format', {fmt!r}, '--out', {str(tmp_path / 'o')!r}]))\n"
        f"print('eval', cli.main(['eval', {str(npz)!r}]))\n"
        f"print('st', cli.main(['eval', {str(float64_run / 'checkpoint.safetensors')!r}]))\n"
    )
    r = run_process([sys.executable, "-c", code], timeout=120)
    assert r.returncode == 0, r.stderr
    assert "export 1" in r.stdout and "eval 0" in r.stdout and "st 1" in r.stdout
    assert f"needs the {package!r} package, which is not installed" in r.stderr
    assert "pip install 'xpnet[export]'" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()
