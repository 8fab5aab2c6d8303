"""The backend seam under stress: nested and per-thread choices, devices tied to their
backend, device strings that must be refused with the valid ones named, awkward host data,
and the CUDA paths proved on this CPU machine with stand-ins (a CuPy whose first kernel
fails, a torch that reports GPUs, CuPy-like devices and arrays)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import Row, _rows, assert_close, tally

import xpnet
from xpnet import backend as B

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("clean_choice")  # no XPNET_* variable, no set_backend


def need(name: str):
    if not B.installed(name):
        pytest.skip(f"{name} is not installed ({B.INSTALL_HINT[name]})")


# ------------------------------------------------------------------ A1: choosing
def test_nested_block_changes_only_what_it_names():
    need("torch")
    with xpnet.use_backend("torch"):
        with xpnet.use_backend(dtype="float64") as inner:
            assert (inner.name, inner.dtype_name) == ("torch", "float64")
            assert xpnet.get_backend() is inner
        assert (xpnet.get_backend().name, xpnet.get_backend().dtype_name) == ("torch", "float32")
    assert xpnet.get_backend().name == "numpy"
    with pytest.raises(KeyError):  # an exception ends the block cleanly
        with xpnet.use_backend("torch"):
            raise KeyError("boom")
    assert xpnet.get_backend().name == "numpy"


def test_device_only_block_keeps_the_outer_backend():
    need("array_api_strict")
    with xpnet.use_backend("array_api_strict"):
        with xpnet.use_backend(device="device1") as inner:
            assert inner.name == "array_api_strict" and B.device_label(inner.device) == "device1"
            assert B.device_label(xpnet.mlp([2, 2]).params["W1"].device) == "device1"
        assert B.device_label(xpnet.get_backend().device) == "CPU_DEVICE"


def test_set_backend_inside_a_block_is_the_default_after_it():
    need("array_api_strict")
    with xpnet.use_backend("array_api_strict"):
        xpnet.set_backend("numpy", dtype="float64")
        assert xpnet.get_backend().name == "array_api_strict"  # the block in force wins...
        assert xpnet.get_backend().dtype_name == "float64"  # ...for what it names only
    be = xpnet.get_backend()
    assert (be.name, be.dtype_name) == ("numpy", "float64")  # set_backend's choice, not lost


def test_a_block_in_one_thread_is_not_seen_by_another_but_set_backend_is():
    need("array_api_strict")
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def in_block():
        with xpnet.use_backend("array_api_strict"):
            seen["inside"] = xpnet.get_backend().name
            entered.set()
            release.wait(30)
            seen["inside, after the others looked"] = xpnet.get_backend().name

    def other():
        seen["other thread"] = xpnet.get_backend().name

    t = threading.Thread(target=in_block)
    t.start()
    try:
        assert entered.wait(30)
        seen["main thread"] = xpnet.get_backend().name
        u = threading.Thread(target=other)
        u.start()
        u.join(30)
    finally:
        release.set()
        t.join(30)
    assert seen == {"inside": "array_api_strict", "main thread": "numpy", "other thread": "numpy",
                    "inside, after the others looked": "array_api_strict"}

    xpnet.set_backend("numpy", dtype="float64")  # the process default: every thread sees it
    u = threading.Thread(target=lambda: seen.update(dtype=xpnet.get_backend().dtype_name))
    u.start()
    u.join(30)
    assert seen["dtype"] == "float64"


# ------------------------------------------------------------------ A2: device strings
BAD_DEVICES = {
    "numpy": ["cuda:0", "gpu", "", "   ", "cpu:1"],
    "dask": ["cuda:0", "gpu", "", " "],
    "torch": ["mps", "meta", "cuda:abc", "cuda:-1", "cuda:99", "", " ", "cpu:3", "CPU", "xla"],
    "jax": ["cpu:abc", "cpu:5", "tpu", "", " ", "gpu:x"],
    "array_api_strict": ["no_x64", "device9", "", " ", "cuda:0"],
}


@pytest.mark.parametrize("name,spec", [(n, s) for n, specs in BAD_DEVICES.items() for s in specs])
def test_bad_device_names_backend_device_and_the_valid_ones(name, spec):
    need(name)
    if name == "torch" and spec in ("mps", "cuda:99"):
        import torch

        if spec in B._valid_devices("torch") or (spec == "cuda:99" and torch.cuda.device_count() > 99):
            pytest.skip(f"this machine really has torch device {spec}")
    tally("hostile inputs")
    with pytest.raises(xpnet.BackendError) as e:
        xpnet.get_backend(name, device=spec)
    msg = str(e.value)
    assert f"backend {name!r}" in msg and repr(spec) in msg and "valid devices here: " in msg, msg
    valid = msg.split("valid devices here: ")[1].split(".")[0]
    assert valid == ", ".join(B._valid_devices(name)), msg


def test_no_x64_is_refused_and_not_listed():
    need("array_api_strict")
    info = B.describe("array_api_strict")
    assert "no_x64" not in info["devices"] and "device1" in info["devices"]
    with pytest.raises(xpnet.BackendError, match="no_x64' .*no int64"):
        xpnet.get_backend("array_api_strict", "no_x64")


def test_torch_cuda_index_is_checked_against_the_device_count(monkeypatch):
    need("torch")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert B._parse_device("torch", "cuda:1") == torch.device("cuda", 1)
    assert B._parse_device("torch", "cuda") == torch.device("cuda", 0)
    with pytest.raises(xpnet.BackendError, match=r"no device 'cuda:2'; valid devices here: cpu, cuda:0, cuda:1"):
        B._parse_device("torch", "cuda:2")
    tally("hostile inputs")


def test_cli_bad_device_is_a_sentence_not_a_traceback(tmp_path, capsys):
    from xpnet import cli

    rc = cli.main(["train", "--backend", "numpy", "--device", "cuda:0", "--epochs", "1", "-q",
                   "--no-plot", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 1 and "backend 'numpy' has no device 'cuda:0'" in err and "Traceback" not in err
    tally("hostile inputs")


# ------------------------------------------------------------------ A5: XPNET_DEVICE with a named backend
def test_environment_device_is_honoured_by_a_named_backend(monkeypatch):
    need("array_api_strict")
    monkeypatch.setenv("XPNET_DEVICE", "  ")  # blank: unset
    assert xpnet.get_backend("array_api_strict").device == xpnet.get_backend("array_api_strict", "cpu").device
    monkeypatch.setenv("XPNET_DEVICE", "device1")  # no XPNET_BACKEND: for whichever backend is used
    be = xpnet.get_backend("array_api_strict")
    assert B.device_label(be.device) == "device1"
    with pytest.raises(xpnet.BackendError, match="backend 'numpy' has no device 'device1'"):
        xpnet.get_backend("numpy")  # never silently ignored


def test_environment_device_goes_with_environment_backend(monkeypatch):
    need("array_api_strict")
    monkeypatch.setenv("XPNET_BACKEND", "array_api_strict")
    monkeypatch.setenv("XPNET_DEVICE", "device1")
    assert B.device_label(xpnet.get_backend().device) == "device1"
    assert B.device_label(xpnet.get_backend("array_api_strict").device) == "device1"
    assert xpnet.get_backend("numpy").device == "cpu"  # the device was given for strict
    x = xpnet.get_backend().asarray(np.ones(3))
    assert xpnet.backend_name(xpnet.to_backend(x, "numpy")) == "numpy"


def test_named_torch_honours_xpnet_device_cuda(monkeypatch):
    """``XPNET_DEVICE=cuda:0 xpnet train --backend torch`` trained on the CPU, silently."""
    need("torch")
    import torch

    monkeypatch.setenv("XPNET_DEVICE", "cuda:0")
    if torch.cuda.is_available():
        assert B.device(xpnet.mlp([2, 2], backend="torch").params["W1"]) == torch.device("cuda", 0)
    else:
        with pytest.raises(xpnet.BackendUnavailableError, match="'torch' has no device 'cuda:0'"):
            xpnet.mlp([2, 2], backend="torch")


def test_cli_train_with_xpnet_device_and_named_backend_refuses_on_a_cpu_host(monkeypatch, tmp_path, capsys):
    need("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("torch has CUDA here: the run would (rightly) train on cuda:0")
    from xpnet import cli

    monkeypatch.setenv("XPNET_DEVICE", "cuda:0")
    rc = cli.main(["train", "--backend", "torch", "--epochs", "1", "-q", "--no-plot",
                   "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 1 and "'cuda:0'" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


# ------------------------------------------------------------------ A3: awkward host data
def _awkward(dtype):
    x = np.arange(12, dtype=dtype).reshape(3, 4)
    ro = x.copy()
    ro.flags.writeable = False
    return {"negative strides": x[::-1], "non-contiguous": x[:, ::2], "read-only": ro,
            "0-d": np.array(2.5, dtype=dtype), "fortran": np.asfortranarray(x)}


def test_awkward_arrays_move_to_every_backend(be):
    for what, a in _awkward(be.dtype_name).items():
        tally("hostile inputs")
        assert_close(xpnet.to_backend(a, be), a, be, rtol=0, atol=0, err_msg=what)
        assert_close(be.asarray(a), a, be, rtol=0, atol=0, err_msg=what)
    for a in (np.array([True, False]), np.arange(4, dtype=np.int32), np.arange(4, dtype=np.uint8)):
        y = xpnet.to_backend(a, be)
        assert B.namespace(y) is be.xp and np.array_equal(xpnet.to_numpy(y), a)
        assert xpnet.to_numpy(y).dtype.kind == a.dtype.kind
    assert_close(be.asarray([[1.0, 2.0]]), np.array([[1.0, 2.0]]), be)
    assert_close(be.asarray(3.0), np.array(3.0), be)
    assert np.array_equal(xpnet.to_numpy(xpnet.to_backend([1, 2, 3], be)), [1, 2, 3])


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([object(), 1]), ["x", "y"],
                                 np.array(["2020-01-01"], dtype="datetime64[D]")])
def test_strings_and_objects_are_a_dtype_error(be, bad):
    tally("hostile inputs")
    with pytest.raises(xpnet.DTypeError, match=f"to backend '{be.name}': expected numbers or booleans"):
        be.asarray(bad)
    with pytest.raises(xpnet.DTypeError):
        xpnet.to_backend(bad, be)


def test_float64_to_a_device_without_it_is_a_dtype_error():
    need("array_api_strict")
    be = xpnet.get_backend("array_api_strict", "no_float64")
    with pytest.raises(xpnet.DTypeError, match="no_float64 cannot hold an array of dtype float64"):
        xpnet.to_backend(np.ones(2), be)
    assert_close(be.asarray(np.ones(2)), np.ones(2), be)  # asarray casts to the backend's float32


# ------------------------------------------------------------------ CuPy stand-ins
class FakeDevice:
    """Like cupy.cuda.Device: equality but no hash, prints as <CUDA Device N>, a context."""

    def __init__(self, id=0):
        self.id, self.entered = id, 0

    def __eq__(self, other):
        return isinstance(other, FakeDevice) and other.id == self.id

    __hash__ = None

    def __repr__(self):
        return f"<CUDA Device {self.id}>"

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        self.entered -= 1


FakeDevice.__module__ = "cupy.cuda.device"


def fake_cupy(first_kernel_error: Exception | None = None, devices: int = 1) -> types.ModuleType:
    """A module that looks enough like CuPy for xpnet's checks; ``ones`` is its first kernel."""
    cp = types.ModuleType("cupy")
    cp.__version__ = "14.2.0"
    cp.ndarray = type("ndarray", (), {"__module__": "cupy"})
    cp.float32 = np.float32

    def ones(shape, dtype=None):
        if first_kernel_error is not None:
            raise first_kernel_error
        return np.ones(shape, dtype)

    cp.ones = ones
    runtime = types.SimpleNamespace(getDeviceCount=lambda: devices, runtimeGetVersion=lambda: 12080,
                                    driverGetVersion=lambda: 12080)
    cp.cuda = types.SimpleNamespace(runtime=runtime, Device=FakeDevice)
    return cp


NVRTC_ERRORS = [RuntimeError("CuPy failed to load libnvrtc.so.12: OSError: cannot open shared object file"),
                type("DynamicLibNotFoundError", (RuntimeError,), {})("Failure finding libnvrtc.so")]


@pytest.mark.parametrize("error", NVRTC_ERRORS, ids=["cupy13", "cupy14"])
def test_cupy_whose_first_kernel_fails_is_unavailable_everywhere(monkeypatch, error):
    assert B._cupy_unusable_reason(fake_cupy()) is None  # the same stand-in with a working kernel
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(error))
    monkeypatch.setattr(B.choice, "_cache", {})
    with pytest.raises(xpnet.BackendUnavailableError, match=r"first CUDA kernel.*libnvrtc.*xpnet\[cuda12\]"):
        xpnet.get_backend("cupy")
    info = B.describe("cupy")
    assert info["usable"] is False and "libnvrtc" in info["why"]
    assert "cupy" not in B.available()
    from xpnet import bench

    assert "libnvrtc" in bench.gpu_unavailable_reason()
    import conftest

    assert conftest._cupy_usable() is False


FAKE_CUPY_SOURCE = '''
import numpy as np
__version__ = "14.2.0"
float32 = np.float32
class ndarray:
    pass
class Device:
    def __init__(self, id=0):
        self.id = id
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False
class _Runtime:
    getDeviceCount = staticmethod(lambda: 1)
    runtimeGetVersion = staticmethod(lambda: 12080)
    driverGetVersion = staticmethod(lambda: 12080)
class cuda:
    runtime = _Runtime
    Device = Device
def ones(*a, **k):
    raise RuntimeError("CuPy failed to load libnvrtc.so.12: cannot open shared object file")
'''


def _run(args, env, timeout=240):
    p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate(timeout=30)
    return p.returncode, out, err


@pytest.mark.slow
def test_broken_cupy_degrades_to_a_clear_error_in_collection_cli_and_info(tmp_path):
    """With a CuPy whose first kernel cannot load NVRTC, the suite still collects (no cupy
    rows), ``xpnet train --backend cupy`` says why, and ``xpnet info`` calls cupy unusable."""
    (tmp_path / "fake" / "cupy").mkdir(parents=True)
    (tmp_path / "fake" / "cupy" / "__init__.py").write_text(textwrap.dedent(FAKE_CUPY_SOURCE))
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPNET_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake"), str(ROOT)])
    env["XPNET_TEST_BACKENDS"] = ""
    rc, out, err = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                         "tests/test_backend.py"], env)
    assert rc == 0 and "test_backend_names_of_arrays[numpy-float32]" in out and "[cupy" not in out, out + err
    rc, out, err = _run([sys.executable, "-m", "xpnet", "train", "--backend", "cupy", "--epochs", "1", "-q",
                         "--no-plot", "--out", str(tmp_path / "run")], env)
    assert rc == 1 and "libnvrtc" in err and "xpnet[cuda12]" in err and "Traceback" not in err, err
    rc, out, err = _run([sys.executable, "-m", "xpnet", "info"], env)
    cupy_line = next(line for line in out.splitlines() if line.strip().startswith("cupy"))
    assert rc == 0 and "NOT USABLE" in cupy_line and "libnvrtc" in cupy_line, out + err


# ------------------------------------------------------------------ devices printed, hashed, activated
def test_cupy_devices_print_as_users_type_them():
    be = B.Backend("cupy", None, FakeDevice(1), np.float32, "float32")
    assert B.device_label(FakeDevice(1)) == "cuda:1"
    assert str(be) == "cupy on cuda:1 (float32)"


def test_backend_is_hashable_even_with_an_unhashable_device():
    with pytest.raises(TypeError):
        hash(FakeDevice(0))
    a = B.Backend("cupy", None, FakeDevice(0), np.float32, "float32")
    b = B.Backend("cupy", None, FakeDevice(0), np.float32, "float32")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert {xpnet.get_backend(): 1}[xpnet.get_backend()] == 1


def test_activate_makes_a_cupy_device_current_and_is_a_no_op_elsewhere():
    dev = FakeDevice(1)
    be = B.Backend("cupy", None, dev, np.float32, "float32")
    with be.activate():
        assert dev.entered == 1
        with be.activate():  # nests
            assert dev.entered == 2
    assert dev.entered == 0
    np_be = xpnet.get_backend()
    with np_be.activate() as inside:
        assert inside is np_be


def test_device_context_of_a_cupy_array_enters_its_device(monkeypatch):
    cp = fake_cupy()
    cp.ndarray = FakeCupyArray
    monkeypatch.setitem(sys.modules, "cupy", cp)
    x = FakeCupyArray(np.zeros(2))
    x.device = FakeDevice(1)
    with B.device_context(x):
        assert x.device.entered == 1
    assert x.device.entered == 0
    with B.device_context(np.zeros(2)):  # elsewhere a no-op
        pass


def test_mismatch_hint_names_the_model_device_and_following_it_works():
    need("array_api_strict")
    like = xpnet.get_backend("array_api_strict", "device1").asarray(np.ones(2))
    x = xpnet.get_backend("array_api_strict").asarray(np.ones(2))
    with pytest.raises(xpnet.BackendMismatchError) as e:
        B.check_same_backend(x, like, "Affine.forward")
    hint = "xpnet.to_backend(x, 'array_api_strict', device='device1')"
    assert hint in str(e.value)
    B.check_same_backend(xpnet.to_backend(x, "array_api_strict", device="device1"), like, "Affine.forward")


# ------------------------------------------------------------------ uploads
class Spy:
    """A namespace whose ``asarray`` records the host arrays it is handed."""

    def __init__(self, real):
        self.real, self.seen = real, []

    def asarray(self, a, **kw):
        self.seen.append(np.asarray(a).dtype)
        return self.real(a, **kw)

    def __getattr__(self, name):
        return getattr(np, name)


def test_float_data_are_cast_on_the_host_before_the_upload():
    need("torch")
    import torch

    spy = Spy(torch.asarray)
    be = B.Backend("torch", spy, torch.device("cpu"), torch.float32, "float32")
    x = be.asarray(np.arange(4.0))
    assert spy.seen == [np.float32] and x.dtype == torch.float32
    spy = Spy(lambda a, **kw: np.array(a))
    cupy_like = B.Backend("cupy", spy, FakeDevice(0), np.float32, "float32")
    cupy_like.asarray(np.arange(4.0))
    assert spy.seen == [np.float32]


def test_small_uploads_to_torch_cuda_are_pinned_and_non_blocking(monkeypatch):
    """Dropout's mask and batch indices must not block the host each step."""
    need("torch")
    import torch

    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: calls.append("pin") or t.clone())
    real_to = torch.Tensor.to

    def to(t, *args, **kw):
        if args and str(args[0]).startswith("cuda"):
            calls.append((str(args[0]), kw.get("non_blocking", False)))
            return t
        return real_to(t, *args, **kw)

    monkeypatch.setattr(torch.Tensor, "to", to)
    be = B.Backend("torch", B.resolve("torch").xp, torch.device("cuda", 0), torch.float32, "float32")
    mask = np.ones((4, 3))
    out = be.asarray(mask)
    assert calls == ["pin", ("cuda:0", True)] and out.dtype == torch.float32
    mask[:] = 0  # the caller reuses its buffer: the upload holds its own copy
    assert float(out.sum()) == 12.0
    calls.clear()
    monkeypatch.setattr(B.torch_lib, "PINNED_UPLOAD_MAX", 8)
    monkeypatch.setattr(torch, "asarray", lambda a, device=None, **kw: calls.append(("blocking", str(device))))
    be.asarray(np.ones(4))
    assert calls == [("blocking", "cuda:0")]


class FakeCupyArray:
    """A device array: ``np.asarray`` refuses it (as CuPy does), ``.get()`` copies it out."""

    def __init__(self, a):
        self.a = a

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()`")

    def get(self):
        return self.a.copy()


def test_device_arrays_are_accepted_by_asarray_and_from_host_like(monkeypatch):
    cp = fake_cupy()
    cp.ndarray = FakeCupyArray
    monkeypatch.setitem(sys.modules, "cupy", cp)
    dev = FakeCupyArray(np.arange(3.0))
    assert xpnet.backend_name(dev) == "cupy"
    be = xpnet.get_backend()
    np.testing.assert_array_equal(be.asarray(dev), np.arange(3.0, dtype=np.float32))
    out = B.from_host_like(dev, np.zeros(1, np.float32))
    assert out.dtype == np.float64 and np.array_equal(out, np.arange(3.0))


def test_torch_tensors_that_require_grad_move_through_asarray(be):
    need("torch")
    import torch

    t = torch.arange(4, dtype=torch.float64, requires_grad=True)  # np.asarray refuses it
    assert_close(be.asarray(t), np.arange(4.0), be)


# ------------------------------------------------------------------ the matrix and the extras
def test_matrix_rows_can_name_devices(monkeypatch):
    monkeypatch.delenv("XPNET_TEST_DTYPES", raising=False)
    rows = _rows("numpy, torch:cuda:0,cupy:cuda:1,array_api_strict,array_api_strict:device2")
    ids = [r.id for r in rows]
    assert Row("torch", "cuda:0", "float32") in rows and Row("cupy", "cuda:1", "float64") in rows
    assert "torch@cuda:0-float32" in ids and "numpy-float64" in ids
    assert Row("array_api_strict", "device1", "float32") in rows  # strict named alone: its devices too
    assert Row("array_api_strict", "device2", "float64") in rows
    assert sum(r.backend == "array_api_strict" for r in rows) == 6


def test_cuda_extras_bring_the_cuda_libraries():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["cuda12"] == ["cupy-cuda12x[ctk]>=14"] and extras["cuda13"] == ["cupy-cuda13x[ctk]>=14"]
    assert "xpnet[cuda12]" in B.INSTALL_HINT["cupy"] and "xpnet[cuda13]" in B.INSTALL_HINT["cupy"]
