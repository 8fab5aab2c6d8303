"""Checkpoints: plain arrays + JSON, atomic, loadable on any backend, strict on bad files."""

import os
import zipfile

import numpy as np
import pytest

import xpnet
from xpnet import backend as B
from xpnet import checkpoint as C
from xpnet.errors import CheckpointError


def trained(be, batchnorm=False, dropout=0.0, steps=2):
    model = xpnet.mlp([4, 6, 3], seed=1, backend=be, batchnorm=batchnorm, dropout=dropout)
    opt = xpnet.get_optimizer("adam", 0.01)
    rng = np.random.default_rng(0)
    x, t = be.asarray(rng.random((8, 4))), be.asarray(np.arange(8) % 3)
    for _ in range(steps):
        opt.update(model.params, model.gradient(x, t))
    return model, opt, x


def test_round_trip_on_every_backend_is_exact(be, tmp_path):
    model, opt, _ = trained(be)
    path = C.save(tmp_path / "c.npz", model, opt, {"epoch": 2, "note": "hi"})
    for target in (be, "numpy"):
        m2, o2, meta = C.load(path, backend=target)
        assert meta["epoch"] == 2 and meta["note"] == "hi" and meta["dtype"] == be.dtype_name
        for k in model.params:
            assert np.array_equal(B.to_numpy(m2.params[k]), B.to_numpy(model.params[k]))  # bit-identical
        assert o2.state["step"] == 2 and type(o2) is type(opt)
        for slot in ("m", "v"):
            for k in model.params:
                assert np.array_equal(B.to_numpy(o2.state[slot][k]), B.to_numpy(opt.state[slot][k]))
    m3, _, _ = C.load(path, backend=be)
    assert B.namespace(m3.params["W1"]) is be.xp and B.device(m3.params["W1"]) == be.device


def test_numpy_float64_checkpoint_loads_bit_identical_on_every_backend(be, tmp_path):
    if not be.supports_float64:
        pytest.skip(f"{be} has no float64")
    model, opt, _ = trained(B.resolve("numpy", dtype="float64"))
    path = C.save(tmp_path / "c.npz", model, opt)
    m2, _, _ = C.load(path, backend=be.name, device=None if be.name != "array_api_strict" else "CPU_DEVICE")
    assert m2.params["W1"].dtype == be.xp.float64
    for k in model.params:
        assert np.array_equal(B.to_numpy(m2.params[k]), model.params[k])


def test_resumed_optimizer_continues_exactly(tmp_path):
    be = B.resolve("numpy", dtype="float64")
    model, opt, x = trained(be)
    C.save(tmp_path / "c.npz", model, opt)
    t = be.asarray(np.arange(8) % 3)
    m2, o2, _ = C.load(tmp_path / "c.npz")
    opt.update(model.params, model.gradient(x, t))
    o2.update(m2.params, m2.gradient(x, t))
    for k in model.params:
        assert np.array_equal(m2.params[k], model.params[k])


def test_batchnorm_and_dropout_models_predict_the_same_after_loading(tmp_path):
    be = B.resolve("numpy", dtype="float64")
    model, opt, x = trained(be, batchnorm=True, dropout=0.2)
    C.save(tmp_path / "c.npz", model, opt)
    m2, _, _ = C.load(tmp_path / "c.npz")
    assert [type(a) for a in m2.layers] == [type(a) for a in model.layers]
    assert np.array_equal(m2.predict(x, train=False), model.predict(x, train=False))
    assert np.array_equal(m2.predict(x, train=True), model.predict(x, train=True))  # same dropout draws


def test_file_is_plain_arrays_and_json(tmp_path):
    model, opt, _ = trained(B.resolve("numpy"))
    path = C.save(tmp_path / "c.npz", model, opt, {"seed": 3})
    with np.load(path, allow_pickle=False) as npz:
        assert {"param/W1", "param/b2", "opt/m/W1", C.META_KEY} <= set(npz.files)
    desc = C.describe_file(path)
    assert desc["format"] == "xpnet-checkpoint" and desc["xpnet_version"] == xpnet.__version__
    assert [layer["type"] for layer in desc["layers"]] == ["Affine", "ReLU", "Affine"]
    assert desc["layers"][0]["params"] == {"W": [4, 6], "b": [6]} and desc["meta"]["seed"] == 3


@pytest.fixture
def saved(tmp_path):
    model, opt, _ = trained(B.resolve("numpy"))
    return C.save(tmp_path / "c.npz", model, opt)


def test_truncated_file_is_refused(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted, truncated"):
        C.load(saved)


def test_corrupted_bytes_are_refused(saved):
    data = bytearray(saved.read_bytes())
    start = data.find(b"param/W1")  # damage the stored weights, keep the zip directory
    data[start + 200 : start + 260] = b"\xff" * 60
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        C.load(saved)


def test_foreign_npz_and_other_files_are_refused(tmp_path):
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an xpnet checkpoint"):
        C.load(tmp_path / "foreign.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError):
        C.load(tmp_path / "text.npz")
    with pytest.raises(CheckpointError, match="cannot read"):
        C.load(tmp_path / "absent.npz")


def test_shape_mismatch_in_a_tampered_file_builds_nothing(saved, tmp_path):
    with np.load(saved, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["param/W1"] = arrays["param/W1"][:2]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match="parameter W1 has shape"):
        C.load(tmp_path / "bad.npz")


def test_save_is_atomic_a_failed_write_keeps_the_old_file(saved, monkeypatch):
    before = saved.read_bytes()
    model, opt, _ = trained(B.resolve("numpy"), steps=5)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        C.save(saved, model, opt)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["c.npz"]  # no temp file left
    assert zipfile.is_zipfile(saved)
