"""The first book's ``common`` / ``dataset`` facade (xpnet.dlfs1) on every backend.

Each test runs inside ``use_backend`` for its row: ``xpnet.dlfs1.np`` then makes that backend's
arrays (boxes on jax, dask and array_api_strict), as ``XPNET_BACKEND`` would in a script.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy
import pytest
import reference as R
from conftest import ROWS, tol
from procs import run

from xpnet import backend as B
from xpnet.datasets import download as D
from xpnet.datasets import idx
from xpnet.dlfs1 import np
from xpnet.dlfs1.arrays import _boxing, _own
from xpnet.dlfs1.dataset import load_digits
from xpnet.dlfs1.dataset.mnist import load_mnist
from xpnet.dlfs1.functions import (
    cross_entropy_error,
    mean_squared_error,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    softmax,
    softmax_loss,
    step_function,
)
from xpnet.dlfs1.gradient import numerical_gradient
from xpnet.dlfs1.layers import Affine, BatchNormalization, Convolution, Dropout, Pooling, Relu, SoftmaxWithLoss
from xpnet.dlfs1.multi_layer_net import MultiLayerNet
from xpnet.dlfs1.multi_layer_net_extend import MultiLayerNetExtend
from xpnet.dlfs1.optimizer import OPTIMIZERS
from xpnet.dlfs1.trainer import Trainer
from xpnet.dlfs1.util import col2im, im2col
from xpnet.errors import BackendMismatchError, ConfigError, DataError, LabelError, ShapeError

BOOKS = Path(__file__).resolve().parent.parent / "examples" / "books"


@pytest.fixture
def book(be):
    """The row's backend chosen for the block, as ``XPNET_BACKEND`` chooses it for a script."""
    with B.use_backend(be.name, B.device_label(be.device), be.dtype_name):
        yield be


FLOAT32_ROWS = [r for r in ROWS if r.dtype == "float32" and r.device is None]


@pytest.fixture(params=FLOAT32_ROWS, ids=[r.id for r in FLOAT32_ROWS])
def book32(request):
    """Whole networks: each backend in float32, the books' scripts' default (float64 is the
    numpy reference they are compared with; the formulas are checked on every row)."""
    row = request.param
    if not B.installed(row.backend):
        pytest.skip(f"{row.backend} is not installed ({B.INSTALL_HINT[row.backend]})")
    try:
        be = B.resolve(row.backend, row.device, row.dtype)
    except B.BackendUnavailableError as e:
        pytest.skip(f"{row.backend} cannot run here: {e}")
    with B.use_backend(be.name, B.device_label(be.device), be.dtype_name):
        yield be


def host(x):
    return numpy.asarray(np.asnumpy(x), dtype=numpy.float64)


def check(actual, expected, be, **kw):
    """``actual`` is what np makes on the row (a box where arrays cannot change), equal to ``expected``."""
    if not _boxing(be):
        assert B.namespace(actual) is be.xp
    else:
        assert type(actual) is np.ndarray and B.namespace(actual.data) is be.xp
    assert tuple(actual.shape) == numpy.shape(expected)
    numpy.testing.assert_allclose(host(actual), expected, **{**tol(be), **kw})


def two_layer_net_class():
    spec = importlib.util.spec_from_file_location("book_two_layer_net", BOOKS / "two_layer_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TwoLayerNet


# --------------------------------------------------------------------------- np itself
def test_np_is_plain_numpy_on_numpy(clean_choice):
    np.random.seed(0)
    w = np.random.randn(3, 4)
    assert type(w) is numpy.ndarray and type(np.dot(w.T, w)) is numpy.ndarray and w.dtype == numpy.float32
    counts = numpy.array([1, 3, 5])  # NumPy's own functions: NumPy's scalars and dtypes
    total = np.sum(counts)
    assert type(total) is numpy.int64 and type(np.sqrt(total)) is numpy.float64 and np.sqrt(total) == 3.0
    for name in ("max", "min", "prod", "argmax", "argmin"):
        assert type(getattr(np, name)(counts)) is numpy.int64, name
    for name in ("mean", "std", "var", "average"):
        assert type(getattr(np, name)(counts)) is numpy.float64, name
    assert type(np.all(counts > 0)) is numpy.bool_ and np.exp(counts).dtype == numpy.float64
    assert np.pad(numpy.ones((2, 2)), 1, mode="reflect").shape == (4, 4)


def test_random_seed_gives_the_same_weights_on_every_backend(book):
    np.random.seed(0)
    W = np.random.randn(3, 4)
    np.random.seed(0)
    check(W, numpy.random.RandomState(0).randn(3, 4), book)
    assert numpy.array_equal(np.random.choice(10, 4), numpy.random.RandomState(0).choice(10, 4))


def test_in_place_idioms_reach_every_holder(book):
    W = np.asarray(numpy.arange(12.0).reshape(3, 4))
    params = {"W": W}
    layer_view = params["W"]
    params["W"] -= 0.5 * np.ones((3, 4))
    check(layer_view, numpy.arange(12.0).reshape(3, 4) - 0.5, book)
    d = np.ones((3, 4))
    d[np.arange(3), numpy.array([0, 3, 3])] -= 1  # the book's SoftmaxWithLoss backward
    want = numpy.ones((3, 4))
    want[[0, 1, 2], [0, 3, 3]] -= 1
    check(d, want, book)
    x = np.asarray(numpy.array([[-1.0, 2.0], [3.0, -4.0]]))
    mask = x <= 0
    x[mask] = 0  # Relu's dout[self.mask] = 0
    check(x, [[0.0, 2.0], [3.0, 0.0]], book)
    x[1, 0] = 7.5  # numerical_gradient's x[idx] = tmp_val + h
    x[0] = np.asarray(numpy.array([1.0, 1.0]))
    check(x, [[1.0, 1.0], [7.5, 0.0]], book)
    flat = x.reshape(4)
    flat[0] = 9.0  # a view where the library writes in place (numpy, torch), else a copy
    check(x, [[9.0 if book.writes_in_place else 1.0, 1.0], [7.5, 0.0]], book)
    with pytest.raises(ValueError, match="shape|broadcast"):
        x -= np.ones((3, 3))  # refused, as NumPy refuses it (a ShapeError on the boxes)
    with pytest.raises(ValueError):
        x[0] = np.ones(3)
    check(x[0], [9.0 if book.writes_in_place else 1.0, 1.0], book)


def test_add_at_accumulates_repeated_indices(book):
    dW = np.zeros((3, 2))
    np.add.at(dW, numpy.array([0, 0, 2, 0]), np.ones((4, 2)))
    check(dW, [[3.0, 3.0], [0.0, 0.0], [1.0, 1.0]], book)


def test_np_functions_follow_numpy(book):
    a = numpy.array([[0.5, -1.0, 2.0], [3.0, 0.25, -2.0]])
    x = np.asarray(a)
    check(np.sum(x, axis=0), a.sum(axis=0), book)
    check(np.mean(x), a.mean(), book)
    check(np.max(x, axis=1), a.max(axis=1), book)
    assert host(np.argmax(x, axis=1)).tolist() == [2, 0]
    check(np.exp(x) + np.sqrt(np.abs(x)) * np.tanh(x), numpy.exp(a) + numpy.sqrt(abs(a)) * numpy.tanh(a), book)
    check(np.maximum(0, x), numpy.maximum(0, a), book)
    check(np.clip(x, -1, 1), numpy.clip(a, -1, 1), book)
    check(np.where(x > 0, x, 0.0), numpy.where(a > 0, a, 0.0), book)
    check(np.pad(x, 1), numpy.pad(a, 1), book)
    check(np.hstack([x, x]), numpy.hstack([a, a]), book)
    check(np.vstack([x[0], x[1]]), a, book)
    check(np.concatenate([x, x], axis=0), numpy.concatenate([a, a]), book)
    check(x.T.reshape(6), a.T.reshape(6), book)
    check(np.dot(x, x.T), a @ a.T, book)
    assert float(np.sum(x > 0)) == 4 and float(np.sum(x > 0) / 6.0) == pytest.approx(4 / 6)
    assert float(np.sqrt(np.sum(numpy.array([1, 3])))) == 2.0  # a host integer sum, then sqrt
    assert np.sqrt(numpy.int64(9)) == 3.0 and float(np.max(numpy.float32(2.5))) == 2.5
    check(x / np.sqrt(numpy.int64(4)), a / 2, book)  # a NumPy scalar meets the backend's array


def test_np_refuses_what_it_does_not_offer(book):
    with pytest.raises(AttributeError, match="asnumpy"):
        np.fft  # noqa: B018
    if _own(book) is None:  # on numpy, np's functions are NumPy's own (every pad mode)
        with pytest.raises(ConfigError, match="constant"):
            np.pad(np.zeros((2, 2)), 1, mode="reflect")


# --------------------------------------------------------------------------- functions and layers
def test_functions_equal_the_book_formulas(book):
    rng = numpy.random.default_rng(1)
    a = rng.standard_normal((4, 3))
    t = numpy.array([0, 2, 1, 2])
    T = R.one_hot(t, 3)
    x = np.asarray(a)
    check(sigmoid(x), R.sigmoid(a), book)
    check(sigmoid_grad(x), R.sigmoid(a) * (1 - R.sigmoid(a)), book)
    check(relu(x), numpy.maximum(a, 0), book)
    check(relu_grad(x), (a >= 0).astype(float), book)
    assert host(step_function(x)).tolist() == (a > 0).astype(int).tolist()
    y = R.softmax(a)
    check(softmax(x), y, book)
    want = -numpy.sum(T * numpy.log(y + 1e-7)) / 4
    check(cross_entropy_error(softmax(x), np.asarray(t)), want, book)  # labels
    check(cross_entropy_error(softmax(x), np.asarray(T)), want, book)  # one-hot rows
    check(cross_entropy_error(softmax(x)[0], np.asarray(T[0])), -numpy.log(y[0, 0] + 1e-7), book)
    check(softmax_loss(x, t), want, book)
    check(mean_squared_error(x, np.asarray(T)), 0.5 * numpy.sum((a - T) ** 2), book)
    with pytest.raises(ShapeError, match="targets"):
        cross_entropy_error(softmax(x), np.asarray(T[:, :2]))


def test_layers_equal_the_book_formulas(book):
    rng = numpy.random.default_rng(2)
    x, W, b = rng.standard_normal((2, 1, 2, 3)), rng.standard_normal((6, 4)), rng.standard_normal(4)
    dout = rng.standard_normal((2, 4))
    affine = Affine(np.asarray(W), np.asarray(b))
    check(affine.forward(x), R.affine_forward(x, W, b), book)
    dx, dW, db = R.affine_backward(x, W, dout)
    check(affine.backward(dout), dx, book)
    check(affine.dW, dW, book)
    check(affine.db, db, book)
    assert affine.original_x_shape == (2, 1, 2, 3) and affine.x.shape == (2, 6)

    s, t = rng.standard_normal((3, 4)), numpy.array([3, 0, 1])
    for target in (t, R.one_hot(t, 4)):
        loss_layer = SoftmaxWithLoss()
        with pytest.raises(LabelError, match="labels"):
            loss_layer.forward(np.asarray(s), numpy.array([3, 0, 4]))  # a label out of range
        assert loss_layer.forward(np.asarray(s), np.asarray(target)) == pytest.approx(R.cross_entropy(s, t), rel=1e-5)
        check(loss_layer.backward(), (R.softmax(s) - R.one_hot(t, 4)) / 3, book)
        check(loss_layer.y, R.softmax(s), book)

    r = Relu()
    check(r.forward(s), numpy.maximum(s, 0), book)
    check(r.backward(numpy.ones((3, 4))), (s > 0).astype(float), book)

    h = rng.standard_normal((5, 3))
    g, beta, dh = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal((5, 3))
    bn = BatchNormalization(np.asarray(g), np.asarray(beta))
    check(bn.forward(h, train_flg=True), R.batchnorm_forward(h, g, beta, eps=10e-7), book)
    dh_want, dgamma, dbeta = R.batchnorm_backward(h, g, dh, eps=10e-7)
    check(bn.backward(dh), dh_want, book, rtol=1e-3 if book.dtype_name == "float32" else 1e-9)
    check(bn.dgamma, dgamma, book)
    check(bn.dbeta, dbeta, book)
    check(bn.running_mean, 0.1 * h.mean(axis=0), book)  # the book's running mean starts at 0


def test_dropout_draws_from_np_random(book):
    x = numpy.ones((4, 5))
    layer = Dropout(dropout_ratio=0.3)
    np.random.seed(3)
    out = layer.forward(x, train_flg=True)
    keep = numpy.random.RandomState(3).rand(4, 5) > 0.3  # the book's mask
    check(out, keep.astype(float), book)
    check(layer.backward(2 * x), 2 * keep, book)
    check(layer.forward(x, train_flg=False), 0.7 * x, book)


def test_optimizers_follow_the_book_on_the_books_dicts(book):
    rng = numpy.random.default_rng(4)
    p0, g0 = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    for name, cls in OPTIMIZERS.items():
        params = {"W": np.asarray(p0)}
        held_by_layer = params["W"]
        want = {"W": p0.copy()}
        oracle = R.Optim(name, lr=0.1)
        opt = cls(lr=0.1)
        for _ in range(3):
            opt.update(params, {"W": np.asarray(g0)})
            oracle.update(want, {"W": g0})
        check(held_by_layer, want["W"], book, rtol=1e-4 if book.dtype_name == "float32" else 1e-9)


def test_bare_arrays_are_refused_where_updates_would_not_reach_the_layer(book):
    bare = book.asarray(numpy.ones((2, 2)))
    if book.writes_in_place:
        Affine(bare, book.asarray(numpy.zeros(2)))  # changes in place: a layer can hold it
        return
    with pytest.raises(BackendMismatchError, match="xpnet.dlfs1.np"):
        Affine(bare, book.asarray(numpy.zeros(2)))
    opt = OPTIMIZERS["sgd"]()
    with pytest.raises(BackendMismatchError, match="cannot\nchange|cannot change"):
        opt.update({"W": bare}, {"W": bare})


def test_convolution_and_pooling_keep_the_books_attributes(book32):
    """Convolution(W, b, stride, pad) and Pooling(ph, pw, stride, pad) equal the book's loops, with
    its attributes in its layouts (col rows (N*OH*OW, C*FH*FW), col_W (C*FH*FW, FN), arg_max per
    output in (N, OH, OW, C) order); util.im2col / col2im are the book's functions."""
    rng = numpy.random.default_rng(5)
    x, W, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    conv = Convolution(np.asarray(W), np.asarray(b), stride=2, pad=1)
    out = conv.forward(np.asarray(x))
    check(out, R.conv_forward(x, W, b, stride=2, pad=1), book32)
    check(conv.x, x, book32)
    check(conv.col, R.im2col(x, 3, 3, 2, 1), book32)
    check(conv.col_W, W.reshape(3, -1).T, book32)
    dout = rng.standard_normal(out.shape)
    dx, dW, db = R.conv_backward(x, W, dout, stride=2, pad=1)
    check(conv.backward(np.asarray(dout)), dx, book32)
    check(conv.dW, dW, book32)
    check(conv.db, db, book32)
    check(im2col(np.asarray(x), 3, 3, stride=2, pad=1), R.im2col(x, 3, 3, 2, 1), book32)
    col = rng.standard_normal((2 * 3 * 3, 2 * 9))
    check(col2im(np.asarray(col), x.shape, 3, 3, stride=2, pad=1), R.col2im(col, x.shape, 3, 3, 2, 1), book32)

    pool = Pooling(2, 2, stride=1)  # the book's default stride is 1: overlapping windows
    y = pool.forward(np.asarray(x))
    want, arg_max = R.pool_forward(x, 2, 2, 1, 1)
    check(y, want, book32)
    assert host(pool.arg_max).tolist() == arg_max.tolist()
    check(pool.x, x, book32)
    dy = rng.standard_normal(want.shape)
    check(pool.backward(np.asarray(dy)), R.pool_backward(x, dy, 2, 2, 1, 1), book32)


# --------------------------------------------------------------------------- gradients and networks
def test_numerical_gradient_perturbs_the_array_in_place(book):
    a = numpy.array([[0.5, -1.0], [2.0, 0.25]])
    x = np.asarray(a)
    grad = numerical_gradient(lambda _: np.sum(x ** 3), x)  # reads x itself, as the network does
    check(grad, 3 * a ** 2, book, atol=2e-2 if book.dtype_name == "float32" else 1e-6)
    check(x, a, book, rtol=0, atol=0)  # restored


def test_multi_layer_net_extend_backprop_equals_numerical_gradient(book32):
    book = book32
    rng = numpy.random.default_rng(5)
    x, t = rng.standard_normal((4, 2)), numpy.array([0, 1, 1, 0])
    np.random.seed(1)
    net = MultiLayerNetExtend(2, [2], 2, use_batchnorm=True, weight_decay_lambda=0.01)
    back = net.gradient(x, t)
    num = net.numerical_gradient(x, t)
    assert sorted(back) == ["W1", "W2", "b1", "b2", "beta1", "gamma1"]
    for key in back:
        check(back[key], host(num[key]), book, atol=5e-3 if book.dtype_name == "float32" else 1e-6, rtol=1e-3)


@pytest.fixture(scope="module")
def digits_subset():
    (x, t), _ = load_digits()
    return x[:64], t[:64]


def train_two_layer_net(x, t, steps=8):
    """The chapter 5 loop with the book's ``network.params[key] -= lr * grad[key]``."""
    np.random.seed(0)
    net = two_layer_net_class()(x.shape[1], 10, 10, weight_init_std=0.1)
    before = net.accuracy(x, t)
    losses = []
    for _ in range(steps):
        grad = net.gradient(x, t)
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= 0.5 * grad[key]
        losses.append(net.loss(x, t))
    return before, net.accuracy(x, t), losses


@pytest.fixture(scope="module")
def numpy_run(digits_subset):
    with B.use_backend("numpy", dtype="float64"):
        return train_two_layer_net(*digits_subset)


def test_two_layer_net_learns_with_the_same_losses_on_every_backend(book32, digits_subset, numpy_run):
    before, after, losses = train_two_layer_net(*digits_subset)
    numpy.testing.assert_allclose(losses, numpy_run[2], rtol=2e-5)
    assert all(b < a for a, b in zip(losses, losses[1:])) and after >= before + 0.2
    assert after == pytest.approx(numpy_run[1])


def test_trainer_prints_the_books_lines(clean_choice, digits_subset, capsys):
    x, t = digits_subset[0][:32], digits_subset[1][:32]
    np.random.seed(0)
    net = MultiLayerNet(x.shape[1], [8], 10)
    trainer = Trainer(net, x, t, x[:16], t[:16], epochs=2, mini_batch_size=16, optimizer="Adam",
                      optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=16)
    trainer.train()
    lines = capsys.readouterr().out.splitlines()
    assert [ln for ln in lines if ln.startswith("train loss:")] and len(trainer.train_loss_list) == 4
    epochs = [ln for ln in lines if ln.startswith("=== epoch:")]
    assert len(epochs) == 2 and epochs[0].startswith("=== epoch:1, train acc:") and epochs[0].endswith(" ===")
    assert lines[-2] == "=============== Final Test Accuracy ===============" and lines[-1].startswith("test acc:")
    assert 0.0 <= float(lines[-1].split(":")[1]) <= 1.0
    with pytest.raises(ConfigError, match="adam"):
        Trainer(net, x, t, x, t, optimizer="adamw")


# --------------------------------------------------------------------------- data
def test_load_mnist_reads_the_idx_files_of_the_data_folder(tmp_path, clean_choice):
    rng = numpy.random.default_rng(6)
    for name, n in (("train", 5), ("t10k", 3)):
        idx.write(tmp_path / f"{name}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=numpy.uint8))
        idx.write(tmp_path / f"{name}-labels-idx1-ubyte", numpy.arange(n, dtype=numpy.uint8))
    (x, t), (xt, tt) = load_mnist(data_dir=tmp_path)
    assert x.shape == (5, 784) and x.dtype == numpy.float32 and 0 <= x.min() and x.max() <= 1
    assert t.tolist() == [0, 1, 2, 3, 4] and xt.shape == (3, 784)
    (x, t), _ = load_mnist(normalize=False, flatten=False, one_hot_label=True, data_dir=tmp_path)
    assert x.shape == (5, 1, 28, 28) and x.dtype == numpy.uint8 and t.shape == (5, 10) and t[2, 2] == 1


def test_load_mnist_offline_names_the_folder_and_the_files(tmp_path, monkeypatch, clean_choice):
    monkeypatch.setitem(D.MIRRORS, "mnist", ["http://127.0.0.1:9/"])
    with pytest.raises(DataError) as e:
        load_mnist(data_dir=tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and all(f in msg for f in D.FILES.values())
    assert "127.0.0.1:9" in msg and "tried:" not in msg  # why the download failed, not an empty list
    assert e.value.__cause__ is None and e.value.__suppress_context__


# --------------------------------------------------------------------------- the example scripts
def run_book(script, backend, **env):
    full = {**os.environ, "XPNET_BACKEND": backend, "XPNET_BOOK_DATA": "digits", **env}
    full.pop("XPNET_DEVICE", None)
    done = run([sys.executable, str(BOOKS / script)], timeout=240, env=full)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_book_scripts_run_with_only_their_imports_rewritten():
    """train_neuralnet.py prints the same numbers on numpy and jax (the book's `-=` loop reaching the
    layers through the boxes); the deeper net's Trainer prints the book's lines; the chapter's
    gradient check agrees in float64 (on boxes: test_numerical_gradient_perturbs_the_array_in_place)."""
    if not B.installed("jax"):
        pytest.skip(f"jax is not installed ({B.INSTALL_HINT['jax']})")
    outs = {b: run_book("train_neuralnet.py", b, XPNET_EXAMPLE_ITERS="40") for b in ("numpy", "jax")}
    assert "using xpnet's bundled 8x8 digits" in outs["numpy"]
    lines = {b: [ln for ln in out.splitlines() if not ln.startswith("data:")] for b, out in outs.items()}
    first_acc = float(lines["numpy"][1].split()[1])
    acc = {b: float(out.split("final test acc:")[1].split()[0]) for b, out in outs.items()}
    loss = {b: float(out.split("final loss:")[1].split()[0]) for b, out in outs.items()}
    assert acc["jax"] == acc["numpy"] > first_acc + 0.03 and loss["jax"] == pytest.approx(loss["numpy"], rel=1e-5)
    deep = run_book("train_deepnet.py", "numpy", XPNET_EXAMPLE_EPOCHS="1")
    assert "=============== Final Test Accuracy ===============" in deep and "=== epoch:1, train acc:" in deep
    grad = run_book("two_layer_net.py", "numpy", XPNET_DTYPE="float64")
    assert float(grad.split("W2:")[1].split()[0]) < 1e-8


def test_simple_convnet_script_learns_alike_on_numpy_and_jax():
    """Chapter 7's SimpleConvNet (an OrderedDict of Convolution, Relu, Pooling, Affine layers and the
    book's Trainer) on 1x8x8 digits: the same losses on numpy and jax, and they fall."""
    if not B.installed("jax"):
        pytest.skip(f"jax is not installed ({B.INSTALL_HINT['jax']})")
    losses = {}
    for backend in ("numpy", "jax"):
        out = run_book("simple_convnet.py", backend, XPNET_EXAMPLE_SAMPLES="200", XPNET_EXAMPLE_EPOCHS="3")
        losses[backend] = [float(ln.split(":")[1]) for ln in out.splitlines() if ln.startswith("train loss:")]
        assert "=== epoch:3, train acc:" in out and "test acc:" in out.split("Final Test Accuracy")[1]
    assert len(losses["numpy"]) == 6
    numpy.testing.assert_allclose(losses["jax"], losses["numpy"], rtol=1e-5)
    assert losses["numpy"][-1] < losses["numpy"][0] - 0.1
