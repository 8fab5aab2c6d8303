"""Datasets: bundled digits and iris, generated spiral, the IDX parser, local MNIST files."""

import gzip

import numpy as np
import pytest

from xpnet import datasets
from xpnet.datasets import idx
from xpnet.errors import ConfigError, DataError


def test_digits_is_a_stratified_80_20_split_scaled_to_unit_interval():
    d = datasets.digits()
    assert d.x_train.shape == (1438, 64) and d.x_test.shape == (359, 64)
    assert d.t_train.dtype == np.int64 and d.num_classes == 10
    for x in (d.x_train, d.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    full = np.bincount(np.concatenate([d.t_train, d.t_test]))
    test = np.bincount(d.t_test)
    assert np.all(np.abs(test - 0.2 * full) <= 0.5)  # every class keeps its share


def test_split_is_fixed_and_disjoint():
    labels = np.repeat(np.arange(3), 10)
    tr1, te1 = datasets.stratified_split(labels)
    tr2, te2 = datasets.stratified_split(labels)
    assert np.array_equal(tr1, tr2) and np.array_equal(te1, te2)
    assert set(tr1).isdisjoint(te1) and len(tr1) + len(te1) == 30
    assert np.array_equal(np.bincount(labels[te1]), [2, 2, 2])


def test_iris_minmax_uses_training_range_and_standard_centres_features():
    d = datasets.iris()
    assert d.x_train.shape == (120, 4) and d.num_classes == 3
    assert np.allclose(d.x_train.min(axis=0), 0) and np.allclose(d.x_train.max(axis=0), 1)
    s = datasets.iris(scale="standard")
    assert np.allclose(s.x_train.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(s.x_train.std(axis=0), 1)


def test_spiral_has_three_arms_of_100_points_and_is_seedable():
    x, t = datasets.make_spiral()
    assert x.shape == (300, 2) and np.array_equal(np.bincount(t), [100, 100, 100])
    assert np.all(np.hypot(x[:, 0], x[:, 1]) < 1.0)
    x2, _ = datasets.make_spiral(seed=1984)
    x3, _ = datasets.make_spiral(seed=7)
    assert np.array_equal(x, x2) and not np.array_equal(x, x3)
    # without noise the radius grows linearly along each arm
    clean, _ = datasets.make_spiral(noise=0.0, points_per_class=4, num_classes=1)
    assert np.allclose(np.hypot(clean[:, 0], clean[:, 1]), [0, 0.25, 0.5, 0.75])


def test_unknown_dataset_and_scaling_name_the_valid_choices():
    with pytest.raises(ConfigError, match="valid datasets: digits, iris"):
        datasets.load("cifar")
    with pytest.raises(ConfigError, match="minmax, standard"):
        datasets.load("digits", scale="log")


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, dtype, gz):
    a = (
        (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        if dtype != "uint8"
        else np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    )
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    idx.write(path, a)
    back = idx.read(path)
    assert back.dtype == a.dtype and back.shape == a.shape and np.array_equal(back, a)


def test_idx_header_matches_the_mnist_layout():
    data = idx.encode(np.zeros((2, 28, 28), np.uint8))
    assert data[:4] == bytes([0, 0, 0x08, 3])
    assert int.from_bytes(data[4:8], "big") == 2 and len(data) == 16 + 2 * 28 * 28


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "not an IDX file"),
        (b"PK\x03\x04rest", "not an IDX file"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "unknown IDX type code 0x07"),
        (bytes([0, 0, 0x08, 2, 0, 0]), "truncated header"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 9, 1, 2]), "truncated or corrupted"),
        (b"\x1f\x8b\x08\x00garbage", "gzip stream is corrupted"),
    ],
)
def test_idx_rejects_bad_files_with_a_clear_error(blob, message):
    with pytest.raises(DataError, match=message):
        idx.parse(blob)


def test_truncated_gzip_is_a_data_error():
    blob = gzip.compress(idx.encode(np.arange(1000, dtype=np.uint8)))
    with pytest.raises(DataError, match="gzip"):
        idx.parse(blob[: len(blob) // 2])


def write_fake_mnist(folder, n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        idx.write(folder / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        idx.write(folder / f"{part}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


def test_mnist_reads_a_local_copy_without_network(tmp_path):
    write_fake_mnist(tmp_path)
    d = datasets.mnist(data_dir=tmp_path, download=False)
    assert d.x_train.shape == (30, 784) and d.x_test.shape == (10, 784)
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    assert np.array_equal(d.t_test, np.arange(10))


def test_mnist_missing_files_offline_say_how_to_fix(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        datasets.mnist(data_dir=tmp_path, download=False)


def test_mnist_data_dir_from_environment(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "fashion-mnist")
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path))
    d = datasets.load("fashion-mnist", download=False)
    assert d.name == "fashion-mnist" and d.class_names[0] == "T-shirt/top"
