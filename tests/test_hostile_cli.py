"""Hostile input to the command line and to checkpoint loading: every refusal is a sentence.

Each case ends in ``xpnet <cmd>: error: ...`` (exit 1) or an argparse usage error (exit 2)
that names what was expected and what was given, never in a traceback or a number computed
from input that should have been refused.
"""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import tally

import xpnet
from xpnet import atomic as A
from xpnet import backend as B
from xpnet import checkpoint as C
from xpnet import cli, datasets
from xpnet.data import Loader
from xpnet.datasets import Scaler, idx
from xpnet.datasets import download as M
from xpnet.errors import BackendError, CheckpointError, ConfigError, DataError, ShapeError


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def refused(argv, capsys, code, *needles):
    got, out, err = run(argv, capsys)
    assert got == code, (got, out, err)
    if code == cli.EXIT_ERROR:
        assert err.startswith(f"xpnet {argv[0]}: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    tally("hostile inputs", 1)
    return err


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    """A checkpoint of a small iris MLP (float32) trained by ``xpnet train``."""
    out = tmp_path_factory.mktemp("iris")
    assert cli.main(["train", "--dataset", "iris", "--epochs", "3", "--hidden", "8", "--quiet",
                     "--no-plot", "--out", str(out)]) == 0
    return out / "checkpoint.npz"


@pytest.fixture(scope="module")
def iris64(tmp_path_factory):
    out = tmp_path_factory.mktemp("iris64")
    assert cli.main(["train", "--dataset", "iris", "--epochs", "3", "--hidden", "8", "--quiet",
                     "--no-plot", "--dtype", "float64", "--out", str(out)]) == 0
    return out / "checkpoint.npz"


def unpack(path):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads(arrays.pop(C.META_KEY).tobytes().decode()), arrays


def pack(path, desc, arrays):
    """Write a checkpoint by hand: numpy.savez plus the JSON description as uint8 bytes."""
    text = json.dumps(desc).encode()
    np.savez(path, **arrays, **{C.META_KEY: np.frombuffer(text, np.uint8)})
    return path


def edited(src, dst, edit):
    desc, arrays = unpack(src)
    edit(desc, arrays)
    return pack(dst, desc, arrays)


# ---------------------------------------------------------------------- 1. --seed
@pytest.mark.parametrize("seed", ["-1", str(2**63), "1.5", "abc", ""])
def test_seed_must_be_a_whole_number_from_0_below_2_63(seed, capsys):
    refused(["train", "--seed", seed], capsys, cli.EXIT_USAGE, "--seed", "0 to 2**63-1", repr(seed))


def test_seed_bounds_are_accepted_and_usable():
    for seed in ("0", str(2**63 - 1)):
        args = cli.build_parser().parse_args(["train", "--seed", seed])
        assert args.seed == int(seed)
        np.random.default_rng(args.seed)  # what the trainer does with it


# ---------------------------------------------------------------------- 2. predict's INPUT
def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content, allow_pickle=True)
    return path


BAD_INPUTS = [  # file name, content, words of the message
    ("narrow.csv", "5.1\n6.7\n", ["has 1 feature(s) per sample", "takes 4"]),
    ("wide.csv", "5.1,3.5,1.4,0.2,9\n", ["has 5 feature(s) per sample", "takes 4"]),
    ("empty.csv", "", ["holds no samples"]),
    ("comments.csv", "# nothing here\n\n", ["holds no samples"]),
    ("header.csv", "a,b,c,d\n5.1,3.5,1.4,0.2\n", ["cannot read features", "no header"]),
    ("ragged.csv", "5.1,3.5,1.4,0.2\n1,2\n", ["cannot read features"]),
    ("latin1.csv", b"5.1,3.5,1.4,0.2\xff\n", ["cannot read features"]),
    ("nan.csv", "5.1,nan,1.4,0.2\n", ["NaN or inf", "sample 0"]),
    ("none.npy", np.zeros((0, 64)), ["holds no samples", "(0, 64)"]),
    ("none4.npy", np.zeros((0, 4)), ["holds no samples"]),
    ("text.npy", np.array([["a", "b", "c", "d"]]), ["dtype <U1", "numbers"]),
    ("objects.npy", np.array([[1.0, None, 2.0, 3.0]], dtype=object), ["Object arrays"]),
    ("complex.npy", np.ones((1, 4), dtype=complex), ["dtype complex128"]),
    ("nan.npy", np.array([[5.1, np.nan, 1.4, 0.2], [1, 2, 3, 4]]), ["1 NaN or inf", "sample 0"]),
    ("inf.npy", np.array([[1, 2, 3, 4], [5.1, np.inf, 1.4, 0.2]]), ["NaN or inf", "sample 1"]),
    ("scalar.npy", np.float64(3.0), ["single number"]),
    ("cube.npy", np.ones((2, 2, 3)), ["has 6 feature(s) per sample", "(2, 2, 3)"]),
    ("not.npy", "5.1,3.5,1.4,0.2\n", ["not a .npy file", "b'5.1,3.5,'"]),
    ("archive.csv", b"PK\x03\x04 a zip", ["not a .npy file"]),
    ("huge.npy", np.array([[1e300, 3.5, 1.4, 0.2]]), ["beyond the range of float32", "--dtype float64"]),
    ("huge.csv", "5.1,3.5,-1e40,0.2\n", ["beyond the range of float32", "feature 2"]),
]


@pytest.mark.parametrize("name, content, words", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_predict_refuses_bad_input_files(iris, tmp_path, capsys, name, content, words):
    path = _write(tmp_path / name, content)
    refused(["predict", str(iris), str(path)], capsys, cli.EXIT_ERROR, repr(str(path)), *words)


def test_predict_refuses_a_missing_file_and_a_folder(iris, tmp_path, capsys):
    refused(["predict", str(iris), str(tmp_path / "absent.csv")], capsys, cli.EXIT_ERROR, "does not exist")
    refused(["predict", str(iris), str(tmp_path)], capsys, cli.EXIT_ERROR, "is a folder")


def test_a_one_column_csv_is_not_broadcast_by_the_scaler(iris):
    """The iris scaler has 4 offsets; a (2, 1) array used to broadcast to (2, 4)."""
    scaler = Scaler.from_json(C.describe_file(iris)["meta"]["scaler"], 4)
    with pytest.raises(ShapeError, match=r"fitted on 4 features.*shape \(2, 1\)"):
        scaler(np.array([[5.1], [6.7]]))
    assert scaler(np.ones((2, 4))).shape == (2, 4)


def test_n_d_input_is_flattened_per_sample(iris, tmp_path, capsys):
    """Documented: a (N, ...) array whose per-sample size is the model's width is accepted."""
    flowers = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    np.save(tmp_path / "flat.npy", flowers)
    np.save(tmp_path / "cube.npy", flowers.reshape(2, 2, 2))
    np.save(tmp_path / "one.npy", flowers[1])
    np.save(tmp_path / "upper.npy", flowers)
    (tmp_path / "upper.npy").rename(tmp_path / "FLOWERS.NPY")
    code, flat, _ = run(["predict", str(iris), str(tmp_path / "flat.npy")], capsys)
    assert code == 0 and len(flat.splitlines()) == 2
    code, cube, _ = run(["predict", str(iris), str(tmp_path / "cube.npy")], capsys)
    assert code == 0 and cube == flat
    code, one, _ = run(["predict", str(iris), str(tmp_path / "one.npy")], capsys)
    assert code == 0 and one.strip().split("\t")[1:] == flat.splitlines()[1].split("\t")[1:]
    code, upper, _ = run(["predict", str(iris), str(tmp_path / "FLOWERS.NPY")], capsys)
    assert code == 0 and upper == flat  # recognised by its header, not by its name


def test_scores_that_overflow_the_model_dtype_are_refused(iris, tmp_path, capsys):
    """Finite inputs, finite weights, but x @ W beyond float32: no prediction from inf - inf."""
    big = edited(iris, tmp_path / "big.npz", lambda d, a: a.update({"param/W1": np.full_like(a["param/W1"], 3e38)}))
    csv = _write(tmp_path / "x.csv", "5.1,3.5,1.4,0.2\n")
    refused(["predict", str(big), str(csv)], capsys, cli.EXIT_ERROR, "scores for 1 sample(s)", "NaN or inf")
    refused(["eval", str(big)], capsys, cli.EXIT_ERROR, "test loss", "NaN or inf")


# ---------------------------------------------------------------------- 3. hand-edited checkpoints
@pytest.fixture(scope="module")
def full(tmp_path_factory, iris):
    """A checkpoint with every kind of entry: Affine, BatchNormalization, ReLU, Dropout, Adam."""
    be = B.resolve("numpy", dtype="float32")
    model = xpnet.mlp([4, 8, 3], seed=1, backend=be, batchnorm=True, dropout=0.2)
    opt = xpnet.get_optimizer("adam", 0.01)
    x, t = be.asarray(np.random.default_rng(0).random((8, 4))), be.asarray(np.arange(8) % 3)
    opt.update(model.params, model.gradient(x, t))
    meta = C.describe_file(iris)["meta"]
    return C.save(tmp_path_factory.mktemp("full") / "full.npz", model, opt, meta)


def _layer(desc, kind):
    return next(e for e in desc["layers"] if e["type"] == kind)


def _set(path, value):
    def edit(desc, arrays):
        *head, last = path
        target = desc
        for key in head:
            target = target[key]
        target[last] = value
    return edit


def _drop(path):
    def edit(desc, arrays):
        *head, last = path
        target = desc
        for key in head:
            target = target[key]
        del target[last]
    return edit


TAMPERED = [  # id, edit(desc, arrays), words of the message
    ("optimizer-extra-key", _set(["optimizer", "momentum"], 0.9), ["optimizer has unknown keys ['momentum']"]),
    ("optimizer-config-unknown", _set(["optimizer", "config", "nesterov"], True),
     ["optimizer.config has unknown keys ['nesterov']"]),
    ("optimizer-bad-lr", _set(["optimizer", "config", "lr"], -1), ["optimizer.config.lr is -1", "> 0"]),
    ("optimizer-text-lr", _set(["optimizer", "config", "lr"], "fast"), ["optimizer.config.lr is 'fast' (type str)"]),
    ("optimizer-nan-beta", _set(["optimizer", "config", "beta1"], float("nan")), ["optimizer.config.beta1 is nan"]),
    ("optimizer-unknown", _set(["optimizer", "name"], "lion"), ["optimizer.name is 'lion'", "'adam'"]),
    ("optimizer-slots", _set(["optimizer", "slots"], ["m"]), ["optimizer.slots is ['m']", "['m', 'v']"]),
    ("optimizer-key-not-a-param", _set(["optimizer", "keys", "m"], ["W1", "W9"]), ["names 'W9'"]),
    ("step-text", _set(["optimizer", "step"], "abc"), ["optimizer.step is 'abc' (type str)", "integer >= 0"]),
    ("step-bool", _set(["optimizer", "step"], True), ["optimizer.step is True (type bool)"]),
    ("layers-text", _set(["layers"], "nope"), ["layers is 'nope' (type str)", "non-empty list"]),
    ("layers-empty", _set(["layers"], []), ["layers is [] (type list)", "non-empty list"]),
    ("layer-not-object", lambda d, a: d["layers"].__setitem__(1, "ReLU"), ["layers[1] is 'ReLU' (type str)"]),
    ("layer-unknown-type", lambda d, a: d["layers"][2].__setitem__("type", "Conv"), ["layers[2].type is 'Conv'"]),
    ("dropout-without-config", lambda d, a: _layer(d, "Dropout").pop("config"), ["lacks ['config']"]),
    ("dropout-ratio-text", lambda d, a: _layer(d, "Dropout")["config"].__setitem__("ratio", "x"),
     [".config.ratio is 'x' (type str)", "[0, 1)"]),
    ("dropout-ratio-one", lambda d, a: _layer(d, "Dropout")["config"].__setitem__("ratio", 1.0),
     [".config.ratio is 1.0"]),
    ("dropout-rng-state", lambda d, a: _layer(d, "Dropout").__setitem__("rng_state", {"state": 1}),
     ["rng_state is {'state': 1} (type dict)", "NumPy generator state naming one of PCG64"]),
    ("dropout-rng-state-values", lambda d, a: _layer(d, "Dropout")["rng_state"].__setitem__("state", "x"),
     ["rng_state is not the state of a NumPy PCG64"]),
    ("repeat-n-negative", lambda d, a: d["layers"].append({"type": "Repeat", "config": {"n": -1}, "params": {}}),
     [".config.n is -1 (type int)", "integer >= 1"]),
    ("batchnorm-without-params", lambda d, a: _layer(d, "BatchNormalization").pop("params"), ["lacks ['params']"]),
    ("batchnorm-momentum-text", lambda d, a: _layer(d, "BatchNormalization")["config"].__setitem__("momentum", "x"),
     [".config.momentum is 'x'"]),
    ("params-not-a-dict", lambda d, a: d["layers"][0].__setitem__("params", [[4, 8], [8]]),
     ["layers[0].params is [[4, 8], [8]] (type list)", "JSON object"]),
    ("shape-with-strings", lambda d, a: d["layers"][0]["params"].__setitem__("W", ["4", 8]),
     ["layers[0].params.W[0] is '4' (type str)", "integer >= 0"]),
    ("chain-mismatch", lambda d, a: d["layers"][-1]["params"].__setitem__("W", [9, 3]),
     ["takes 9 features but the layer before gives 8"]),
    ("param-int-dtype", lambda d, a: a.__setitem__("param/W1", a["param/W1"].astype(np.int64)),
     ["parameter W1 has shape [4, 8] and dtype int64", "dtype float32"]),
    ("param-float16", lambda d, a: a.__setitem__("param/b2", a["param/b2"].astype(np.float16)),
     ["parameter b2", "dtype float16"]),
    ("param-missing", lambda d, a: a.pop("param/W2"), ["parameter W2 is missing"]),
    ("state-missing", lambda d, a: a.pop("state/running_var1"), ["state array running_var1 is missing"]),
    ("opt-state-shape", lambda d, a: a.__setitem__("opt/m/W1", a["opt/m/W1"][:2]), ["optimizer state m/W1 has shape"]),
    ("extra-array", lambda d, a: a.__setitem__("param/W9", np.zeros(2, np.float32)),
     ["arrays the description does not name: ['param/W9']"]),
    ("params-list", _set(["params"], ["W1"]), ["params is ['W1'] (type list)"]),
    ("loss-missing", _drop(["loss"]), ["description lacks ['loss']"]),
    ("loss-unknown", _set(["loss"], "Hinge"), ["loss is 'Hinge'"]),
    ("dtype-unknown", _set(["dtype"], "float16"), ["dtype is 'float16'"]),
    ("meta-list", _set(["meta"], ["iris"]), ["meta is ['iris'] (type list)", "JSON object"]),
    ("unknown-top-key", _set(["weights"], {}), ["description has unknown keys ['weights']"]),
    ("format-version-text", _set(["format_version"], "1"),
     ["format_version is '1' (type str); expected the integer 1"]),
    ("format-version-2", _set(["format_version"], 2), ["format version 2; this xpnet reads version 1"]),
    ("format-other", _set(["format"], "keras"), ["not an xpnet checkpoint"]),
]


@pytest.mark.parametrize("edit, words", [c[1:] for c in TAMPERED], ids=[c[0] for c in TAMPERED])
def test_hand_edited_checkpoints_are_refused_before_anything_is_built(full, tmp_path, monkeypatch, capsys,
                                                                       edit, words):
    path = edited(full, tmp_path / "edited.npz", edit)

    def build(*args):
        raise AssertionError("a layer was built from an unchecked description")

    monkeypatch.setattr(C, "_build_layer", build)
    for call in (C.read, C.load):
        with pytest.raises(CheckpointError) as e:
            call(path)
        for word in words:
            assert word in str(e.value)
    for cmd in (["eval", str(path)], ["predict", str(path)]):
        refused(cmd, capsys, cli.EXIT_ERROR, repr(str(path)), *words)


def test_the_untouched_checkpoint_loads_and_predicts(full, capsys):
    """The control for the table above: only the edit makes a file bad."""
    desc, arrays = C.read(full)
    assert {e["type"] for e in desc["layers"]} >= {"Affine", "BatchNormalization", "ReLU", "Dropout"}
    model, opt, _ = C.load(full)
    assert opt.state["step"] == 1 and np.isfinite(model.predict(np.ones((2, 4), np.float32))).all()
    code, out, _ = run(["predict", str(full), "--limit", "3"], capsys)
    assert code == 0 and len(out.splitlines()) == 3


def test_object_arrays_in_a_checkpoint_are_refused(full, tmp_path):
    desc, arrays = unpack(full)
    arrays["param/W1"] = arrays["param/W1"].astype(object)
    text = np.frombuffer(json.dumps(desc).encode(), np.uint8)
    np.savez(tmp_path / "obj.npz", **arrays, **{C.META_KEY: text})
    with pytest.raises(CheckpointError, match="Object arrays"):
        C.load(tmp_path / "obj.npz")
    tally("hostile inputs", 1)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p.write_text("hello, I am text"), ["is not a zip/.npz file", "b'hello, I am text'"]),
        (lambda p: p.write_bytes(b""), ["is empty (0 bytes)"]),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros(3)) or p.with_suffix(".npy").rename(p),
         ["is not a zip/.npz file", "NUMPY"]),
        (lambda p: p.mkdir(), ["is a folder", "checkpoint.npz"]),
        (lambda p: None, ["cannot read checkpoint", "No such file"]),
    ],
    ids=["text", "empty", "npy", "folder", "missing"],
)
def test_files_that_are_not_checkpoints_say_so(tmp_path, capsys, make, words):
    path = tmp_path / "checkpoint.npz"
    make(path)
    with pytest.raises(CheckpointError) as e:
        C.load(path)
    assert all(w in str(e.value) for w in words) and "allow_pickle" not in str(e.value)
    for cmd in ("eval", "predict"):
        err = refused([cmd, str(path)], capsys, cli.EXIT_ERROR, *words)
        assert "allow_pickle" not in err


def test_hand_edited_checkpoints_are_refused_on_every_backend(be, full, tmp_path):
    path = edited(full, tmp_path / "e.npz", _set(["optimizer", "step"], "abc"))
    with pytest.raises(CheckpointError, match="optimizer.step is 'abc'"):
        C.load(path, backend=be)
    model, _, _ = C.load(full, backend=be)
    assert B.namespace(model.params["W1"]) is be.xp and model.params["W1"].dtype == be.dtype
    tally("hostile inputs", 1)


# ---------------------------------------------------------------------- 4. another dataset
def test_eval_on_another_dataset_names_the_mismatch(iris, capsys):
    err = refused(["eval", str(iris), "--dataset", "digits"], capsys, cli.EXIT_ERROR,
                  "trained on iris (4 features, 3 classes)", "digits has 64 features and 10 classes",
                  "leave out --dataset")
    assert "Affine expects" not in err


def test_predict_with_a_meta_dataset_that_does_not_fit_the_model(iris, tmp_path, capsys):
    path = edited(iris, tmp_path / "d.npz", _set(["meta", "dataset"], "digits"))
    refused(["predict", str(path)], capsys, cli.EXIT_ERROR, "model of 4 features and 3 classes",
            "digits has 64 features and 10 classes")


# ---------------------------------------------------------------------- 5. float64 without float64
def test_float64_checkpoint_on_a_device_without_float64_gives_advice_that_works(iris64, capsys):
    pytest.importorskip("array_api_strict", reason="array_api_strict is not installed")
    where = ["--backend", "array_api_strict", "--device", "no_float64"]
    with pytest.raises(BackendError) as e:
        C.load(iris64, backend="array_api_strict", device="no_float64")
    assert "--dtype float32" in str(e.value) and "dtype='float32'" in str(e.value)
    assert "XPNET_DTYPE" not in str(e.value)
    model, _, _ = C.load(iris64, backend="array_api_strict", device="no_float64", dtype="float32")
    ref, _, _ = C.load(iris64, backend="numpy")
    x = np.random.default_rng(0).random((5, 4))
    got = B.to_numpy(model.predict(model.params["W1"].__array_namespace__().asarray(
        x.astype(np.float32), device=B.device(model.params["W1"]))))
    np.testing.assert_allclose(got, ref.predict(x), rtol=1e-4, atol=1e-5)
    err = refused(["eval", str(iris64), *where], capsys, cli.EXIT_ERROR, "float64", "--dtype float32")
    assert "XPNET_DTYPE" not in err
    code, out, _ = run(["eval", str(iris64), *where, "--dtype", "float32", "--json"], capsys)
    code64, out64, _ = run(["eval", str(iris64), "--json"], capsys)
    assert code == code64 == 0
    assert json.loads(out)["test_acc"] == json.loads(out64)["test_acc"]


# ---------------------------------------------------------------------- 6. data folders and MNIST files
def _fake_mnist(folder, train_shape=(30, 28, 28), test_shape=(10, 28, 28), train_labels=None):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for part, shape, labels in (("train", train_shape, train_labels), ("t10k", test_shape, None)):
        idx.write(folder / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, shape, dtype=np.uint8))
        labels = (np.arange(shape[0]) % 10) if labels is None else labels
        idx.write(folder / f"{part}-labels-idx1-ubyte.gz", np.asarray(labels, np.uint8))
    return folder


def test_data_dir_naming_a_file_is_refused(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    with pytest.raises(DataError, match=r"notes.txt.*is a file; expected a folder"):
        datasets.mnist(data_dir=afile, download=False)
    monkeypatch.setenv("XPNET_DATA_DIR", str(afile))
    with pytest.raises(DataError, match=r"\$XPNET_DATA_DIR\) is a file"):
        datasets.load("mnist", download=False)
    with pytest.raises(DataError, match="empty string"):
        M.fetch("x.gz", "mnist", data_dir="", download_missing=False)
    for cmd in (["train", "--dataset", "mnist"], ["eval", "c.npz"], ["predict", "c.npz"]):
        refused([*cmd, "--data-dir", str(afile)], capsys, cli.EXIT_USAGE, "--data-dir", "is a file")
        refused([*cmd, "--data-dir", ""], capsys, cli.EXIT_USAGE, "--data-dir", "empty string")
    tally("hostile inputs", 3)


@pytest.mark.parametrize(
    "files, words",
    [
        (dict(test_shape=(10, 20, 20)), ["train and test images differ in size", "28x28 (train) vs 20x20 (test)"]),
        (dict(train_labels=np.arange(29) % 10), ["30 images but labels of shape (29,)"]),
        (dict(train_labels=np.full(30, 12)), ["labels from 12 to 12", "0..9"]),
        (dict(train_shape=(30, 784)), ["shape (30, 784)", "(N, rows, columns)"]),
    ],
    ids=["sizes", "count", "range", "flat"],
)
def test_local_mnist_files_that_disagree_are_refused(tmp_path, capsys, files, words):
    folder = _fake_mnist(tmp_path / "mnist", **files)
    with pytest.raises(DataError) as e:
        datasets.mnist(data_dir=folder, download=False)
    assert all(w in str(e.value) for w in words), str(e.value)
    refused(["train", "--dataset", "mnist", "--data-dir", str(folder), "--epochs", "1", "--quiet",
             "--no-plot", "--out", str(tmp_path / "out")], capsys, cli.EXIT_ERROR, *words)


# ---------------------------------------------------------------------- 7. file modes
@pytest.fixture
def umask():
    old = os.umask(0o022)
    try:
        yield lambda mask: os.umask(mask)
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    assert A._umask() == mask
    with open(tmp_path / "plain", "w"):
        pass
    expected = 0o666 & ~mask
    assert (tmp_path / "plain").stat().st_mode & 0o777 == expected
    C.write_atomic(tmp_path / "atomic", b"x")
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == expected
    model = xpnet.mlp([4, 3], seed=0, backend="numpy")
    C.save(tmp_path / "c.npz", model)
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == expected


def test_without_proc_the_umask_read_at_import_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(A, "_proc_umask", lambda: None)
    monkeypatch.setattr(A, "_UMASK_AT_IMPORT", 0o027)
    C.write_atomic(tmp_path / "f", b"x")
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


def test_rewriting_a_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "history.json"
    path.write_text("{}")
    path.chmod(0o640)
    C.write_atomic(path, b"[]")
    assert path.stat().st_mode & 0o777 == 0o640 and path.read_bytes() == b"[]"


def test_train_outputs_are_readable_by_the_group_under_umask_022(tmp_path, umask):
    umask(0o022)
    assert cli.main(["train", "--dataset", "iris", "--epochs", "1", "--quiet", "--no-plot",
                     "--out", str(tmp_path)]) == 0
    for name in ("checkpoint.npz", "history.json", "history.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


# ---------------------------------------------------------------------- 8. meta that eval/predict read
META_CASES = [  # id, edit of meta, commands that must refuse, words
    ("unknown-dataset", {"dataset": "cifar"}, ["eval", "predict"], ["names the dataset 'cifar'", "--dataset"]),
    ("dataset-number", {"dataset": 7}, ["eval", "predict"], ["names the dataset 7"]),
    ("scaler-missing", {"scaler": None}, ["predict-csv"], ["has no scaler"]),
    ("scaler-offsets", {"scaler": {"kind": "minmax", "offset": [0, 0, 0], "divisor": [1, 1, 1]}},
     ["eval", "predict", "predict-csv"], ["3 offsets for a model of 4 features"]),
    ("scaler-text", {"scaler": "minmax"}, ["eval", "predict-csv"], ["bad scaler", "kind, offset and divisor"]),
    ("scaler-zero", {"scaler": {"kind": "minmax", "offset": [0], "divisor": [0]}}, ["predict-csv"],
     ["a divisor is 0"]),
    ("scaler-strings", {"scaler": {"kind": "minmax", "offset": ["0"], "divisor": [1]}}, ["predict-csv"],
     ["offset is not a non-empty list of finite numbers"]),
    ("class-names-short", {"class_names": ["a", "b"]}, ["eval", "predict"], ["expected a list of 3 strings"]),
    ("class-names-text", {"class_names": "abc"}, ["predict-csv"], ["expected a list of 3 strings"]),
    ("class-names-ints", {"class_names": [0, 1, 2]}, ["predict"], ["expected a list of 3 strings"]),
    ("seed-text", {"seed": "abc"}, ["eval"], ["meta seed is 'abc'"]),
]


@pytest.mark.parametrize("change, commands, words", [c[1:] for c in META_CASES], ids=[c[0] for c in META_CASES])
def test_bad_meta_is_named_by_eval_and_predict(iris, tmp_path, capsys, change, commands, words):
    def edit(desc, arrays):
        for k, v in change.items():
            if v is None:
                desc["meta"].pop(k)
            else:
                desc["meta"][k] = v

    path = str(edited(iris, tmp_path / "m.npz", edit))
    csv = str(_write(tmp_path / "x.csv", "5.1,3.5,1.4,0.2\n"))
    argv = {"eval": ["eval", path], "predict": ["predict", path], "predict-csv": ["predict", path, csv]}
    for cmd in commands:
        refused(argv[cmd], capsys, cli.EXIT_ERROR, *words)


def test_a_model_without_weights_is_refused_by_eval_and_predict(iris, tmp_path, capsys):
    path = str(tmp_path / "relu.npz")
    C.save(path, xpnet.Sequential([xpnet.ReLU()]), meta=C.describe_file(iris)["meta"])
    assert C.describe_file(path)["dtype"] is None
    for argv in (["eval", path], ["predict", path]):
        refused(argv, capsys, cli.EXIT_ERROR, "a model without weight matrices")


@pytest.mark.parametrize("loss", ["SigmoidWithLoss", "MeanSquaredError"])
def test_eval_and_predict_need_a_softmax_classifier(iris, tmp_path, capsys, loss):
    path = str(edited(iris, tmp_path / "l.npz", _set(["loss"], loss)))
    for argv in (["eval", path], ["predict", path, "--limit", "2"]):
        refused(argv, capsys, cli.EXIT_ERROR, f"trained with {loss}", "SoftmaxWithLoss classifier")


def test_eval_with_dataset_works_when_the_meta_names_an_unknown_one(iris, tmp_path, capsys):
    path = edited(iris, tmp_path / "m.npz", _set(["meta", "dataset"], "cifar"))
    code, out, _ = run(["eval", str(path), "--dataset", "iris", "--json"], capsys)
    code0, out0, _ = run(["eval", str(iris), "--json"], capsys)
    assert code == code0 == 0 and json.loads(out)["test_acc"] == json.loads(out0)["test_acc"]


def test_scaler_from_json_checks_its_width():
    good = {"kind": "standard", "offset": [0.0, 1.0], "divisor": [1.0, 2.0]}
    assert Scaler.from_json(good, 2)(np.ones((1, 2))).tolist() == [[1.0, 0.0]]
    for bad, n in ((good, 3), ({**good, "divisor": [1.0]}, 2), ({**good, "offset": [True, 1.0]}, 2), ([1], None)):
        with pytest.raises(DataError, match="bad scaler"):
            Scaler.from_json(bad, n)
    tally("hostile inputs", 4)


# ---------------------------------------------------------------------- 9. every flag, odd paths, the guard
@pytest.mark.parametrize(
    "argv, words",
    [
        (["predict", "c.npz", "--limit", "0"], ["--limit", "positive integer"]),
        (["predict", "c.npz", "--limit", "-3"], ["--limit"]),
        (["predict", "c.npz", "--limit", "many"], ["--limit", "'many'"]),
        (["eval", "c.npz", "--dataset", "cifar"], ["--dataset", "invalid choice"]),
        (["eval", "c.npz", "--dtype", "float16"], ["--dtype", "invalid choice"]),
        (["eval", "c.npz", "--backend", "tensorflow"], ["--backend", "invalid choice"]),
        (["train", "--weight-decay", "-1"], ["--weight-decay", ">= 0"]),
        (["train", "--weight-decay", "nan"], ["--weight-decay"]),
        (["train", "--lr", "inf"], ["--lr"]),
        (["train", "--hidden", "0"], ["--hidden"]),
        (["eval"], ["checkpoint"]),
        (["info", "--bogus"], ["unrecognized arguments"]),
    ],
)
def test_nonsense_flags_are_usage_errors(argv, words, capsys):
    refused(argv, capsys, cli.EXIT_USAGE, *words)


@pytest.mark.parametrize("backend, device", [("numpy", "nonsense"), ("numpy", "cuda:0"), ("torch", "cpu:abc"),
                                             ("jax", "cpu:abc"), ("jax", "tpu:7"), ("array_api_strict", "gpu")])
def test_device_nonsense_prints_an_error_not_a_traceback(iris, capsys, backend, device):
    if not B.installed(backend):
        pytest.skip(f"{backend} is not installed")
    for cmd in ("eval", "predict"):
        code, _, err = run([cmd, str(iris), "--backend", backend, "--device", device], capsys)
        assert code == cli.EXIT_ERROR and err.startswith(f"xpnet {cmd}: ")
        assert any(part in err for part in device.split(":")), err
    tally("hostile inputs", 2)


def test_odd_bytes_and_newlines_in_paths(iris, tmp_path, capsys):
    for name in (os.fsdecode(b"caf\xe9.npz"), "two\nlines.npz"):
        path = str(tmp_path / name)
        refused(["eval", path], capsys, cli.EXIT_ERROR, repr(path))
        refused(["predict", str(iris), path.replace(".npz", ".csv")], capsys, cli.EXIT_ERROR, "does not exist")
        shutil.copy(iris, path)
        code, out, _ = run(["eval", path, "--json"], capsys)
        assert code == 0 and json.loads(out)["checkpoint"] == path
        code, out, _ = run(["eval", path], capsys)
        assert code == 0 and "test accuracy" in out


def test_class_names_that_cannot_be_printed_are_escaped(iris, tmp_path, capsys):
    """A lone surrogate (valid in JSON) cannot be written as UTF-8: it is shown escaped."""
    path = edited(iris, tmp_path / "n.npz", _set(["meta", "class_names"], ["\udce9a", "\udce9b", "\udce9c"]))
    code, out, _ = run(["predict", str(path), "--limit", "5"], capsys)
    assert code == 0 and len(out.splitlines()) == 5
    assert all(line.split("\t")[1].startswith("\\udce9") for line in out.splitlines())


def test_last_resort_guard_prints_a_sentence_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setitem(cli.COMMANDS, "info", broken)
    code, _, err = run(["info"], capsys)
    assert code == cli.EXIT_ERROR and err.strip() == (
        "xpnet info: internal error: RuntimeError: boom (please report; XPNET_DEBUG=1 shows the traceback)"
    )
    monkeypatch.setitem(cli.COMMANDS, "info", lambda args: (_ for _ in ()).throw(MemoryError("12 GiB")))
    code, _, err = run(["info"], capsys)
    assert code == cli.EXIT_ERROR and err.strip() == (
        "xpnet info: error: out of memory (12 GiB); use a smaller model, batch or dataset"
    )
    monkeypatch.setitem(cli.COMMANDS, "info", broken)
    monkeypatch.setenv("XPNET_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["info"])


def test_info_survives_nonsense_in_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("XPNET_BACKEND", "\udcffnonsense")
    monkeypatch.setenv("XPNET_DTYPE", "float7")
    code, out, _ = run(["info"], capsys)
    assert code == 0 and "numpy" in out
    code, out, _ = run(["info", "--json"], capsys)
    assert code == 0 and json.loads(out)["XPNET_BACKEND"] == "\udcffnonsense"


# ---------------------------------------------------------------------- more of the same classes
def test_save_refuses_what_read_would_refuse(tmp_path):
    model = xpnet.mlp([4, 3], seed=0, backend="numpy")
    with pytest.raises(ConfigError, match="meta must be a dict"):
        C.save(tmp_path / "a.npz", model, meta=["iris"])
    loop = {}
    loop["self"] = loop
    with pytest.raises(ConfigError, match="JSON values"):
        C.save(tmp_path / "b.npz", model, meta=loop)

    class Scale(xpnet.ReLU):
        pass

    odd = xpnet.Sequential([*model.layers, Scale()], model.loss_layer)
    with pytest.raises(CheckpointError, match="cannot save layer Scale"):
        C.save(tmp_path / "c.npz", odd)
    assert not any(tmp_path.iterdir())
    tally("hostile inputs", 3)


@pytest.mark.parametrize("bit_generator", C.BIT_GENERATORS)
def test_dropout_with_any_bit_generator_round_trips(tmp_path, bit_generator):
    """MT19937, Philox and SFC64 keep arrays in their state; saving them used to fail."""
    be = B.resolve("numpy", dtype="float64")
    model = xpnet.mlp([4, 6, 3], seed=1, backend=be, dropout=0.3)
    drop = next(layer for layer in model.layers if isinstance(layer, xpnet.Dropout))
    drop.rng = np.random.Generator(getattr(np.random, bit_generator)(7))
    C.save(tmp_path / "c.npz", model)
    m2, _, _ = C.load(tmp_path / "c.npz")
    x = np.random.default_rng(0).random((5, 4))
    assert np.array_equal(m2.predict(x, train=True), model.predict(x, train=True))


def test_seeds_and_generator_states_are_checked_in_the_api(be):
    x, t = be.asarray(np.ones((6, 4))), be.asarray(np.zeros(6, np.int64))
    with pytest.raises(ConfigError, match="seed must be an integer >= 0"):
        Loader(x, t, batch_size=2, seed=-1)
    loader = Loader(x, t, batch_size=2, seed=[3, 1])
    with pytest.raises(ConfigError, match="pass what loader.rng_state returned"):
        loader.rng_state = {"bit_generator": "PCG64", "state": "abc"}
    with pytest.raises(ShapeError, match="need a sample axis"):
        Loader(be.asarray(np.float64(1.0)), be.asarray(np.int64(0)), batch_size=1)
    tally("hostile inputs", 3)


def test_dataset_arguments_are_checked():
    with pytest.raises(ConfigError, match="spiral seed must be an integer >= 0, got -1"):
        datasets.load("spiral", seed=-1)
    with pytest.raises(ConfigError, match="test_fraction"):
        datasets.stratified_split([0, 1, 0, 1], "half")
    with pytest.raises(DataError, match="no mirrors were given"):
        M.fetch("x.gz", "cifar", data_dir=os.devnull + "-absent")
    with pytest.raises(DataError, match="must be a path"):
        datasets.mnist(data_dir=123, download=False)
    tally("hostile inputs", 4)


def test_a_malformed_mirror_url_is_a_download_error(tmp_path):
    with pytest.raises(DataError, match=r"not-a-url/x.gz: download failed.*unknown url type"):
        M.fetch("x.gz", "mnist", data_dir=tmp_path, mirrors=["not-a-url"])
    assert not any(tmp_path.rglob("*.part"))
    tally("hostile inputs", 1)
