"""The backend seam: lazy loading, choosing (arguments > code > environment > default),
clear errors, and moving arrays between backends."""

import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import assert_close

import xpnet
from xpnet import backend as B

pytestmark = pytest.mark.usefixtures("clean_choice")  # no XPNET_* variable, no set_backend


def test_import_xpnet_loads_no_gpu_or_heavy_backend():
    code = ("import sys, xpnet; heavy = [m for m in ('cupy', 'torch', 'jax', 'dask', 'matplotlib', 'tqdm') "
            "if m in sys.modules]; print(heavy); assert not heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_is_numpy_float32_on_cpu():
    be = xpnet.get_backend()
    assert (be.name, be.dtype_name, be.device) == ("numpy", "float32", "cpu")


def test_environment_chooses(monkeypatch):
    monkeypatch.setenv("XPNET_BACKEND", "array_api_strict")
    monkeypatch.setenv("XPNET_DEVICE", "device1")
    monkeypatch.setenv("XPNET_DTYPE", "float64")
    be = xpnet.get_backend()
    assert (be.name, str(be.device), be.dtype_name) == ("array_api_strict", str(B._parse_device(
        "array_api_strict", "device1")), "float64")


def test_explicit_beats_code_beats_environment(monkeypatch):
    monkeypatch.setenv("XPNET_BACKEND", "array_api_strict")
    assert xpnet.get_backend().name == "array_api_strict"
    xpnet.set_backend("numpy", dtype="float64")
    assert xpnet.get_backend().name == "numpy" and xpnet.get_backend().dtype_name == "float64"
    with xpnet.use_backend("array_api_strict", device="no_float64", dtype="float32") as inner:
        assert xpnet.get_backend() is inner
        assert xpnet.get_backend("numpy").name == "numpy"  # explicit argument wins
        m = xpnet.mlp([2, 2])
        assert xpnet.backend_name(m.params["W1"]) == "array_api_strict"
    assert xpnet.get_backend().name == "numpy"  # restored on exit


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(xpnet.BackendError, match="unknown backend 'tensorflow'.*numpy, cupy, torch, jax"):
        xpnet.get_backend("tensorflow")


def test_bad_dtype_and_device_are_named(monkeypatch):
    monkeypatch.setenv("XPNET_DTYPE", "float16")
    with pytest.raises(xpnet.BackendError, match="unknown dtype 'float16'.*float32, float64"):
        xpnet.get_backend()
    monkeypatch.delenv("XPNET_DTYPE")
    with pytest.raises(xpnet.BackendError, match="backend 'numpy' has no device 'cuda:0'.*valid devices here: cpu"):
        xpnet.get_backend("numpy", device="cuda:0")
    with pytest.raises(xpnet.BackendError, match="no device 'device9'.*valid devices here: CPU_DEVICE"):
        xpnet.get_backend("array_api_strict", device="device9")


def test_float64_on_a_device_without_it_is_refused():
    with pytest.raises(xpnet.BackendError, match="does not support float64.*XPNET_DTYPE=float32"):
        xpnet.get_backend("array_api_strict", device="no_float64", dtype="float64")


def test_missing_package_names_the_pip_extra(monkeypatch):
    monkeypatch.setattr(B.library("jax"), "module", "xpnet_no_such_module")
    B._cache.clear()
    with pytest.raises(xpnet.BackendNotInstalledError, match=r"pip install 'xpnet\[jax\]'"):
        xpnet.get_backend("jax")
    B._cache.clear()


def test_cupy_without_a_gpu_says_so(monkeypatch):
    """A CuPy whose driver call fails (as on this CPU machine) gives a sentence, not a traceback."""

    class CUDARuntimeError(RuntimeError):
        pass

    def no_driver():
        raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    fake = types.SimpleNamespace(
        __version__="14.0", cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_driver)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    B._cache.clear()
    with pytest.raises(xpnet.BackendUnavailableError, match="cannot run on this machine: no usable CUDA "
                       "driver or device.*InsufficientDriver"):
        xpnet.get_backend("cupy")
    fake.cuda.runtime.getDeviceCount = lambda: 0
    with pytest.raises(xpnet.BackendUnavailableError, match="reports no GPU device"):
        xpnet.get_backend("cupy")
    B._cache.clear()


def test_nothing_falls_back_silently(monkeypatch):
    monkeypatch.setenv("XPNET_BACKEND", "no-such-backend")
    with pytest.raises(xpnet.BackendError):
        xpnet.mlp([2, 2])


def test_jax_float64_is_really_float64():
    pytest.importorskip("jax", reason="jax not installed (pip install 'xpnet[jax]')")
    be = xpnet.get_backend("jax", dtype="float64")
    x = be.asarray(np.array([1.0 + 1e-12]))
    assert str(x.dtype) == "float64" and float(xpnet.to_numpy(x)[0]) == 1.0 + 1e-12


def test_to_backend_round_trips_between_every_pair(be, rng):
    host = rng.standard_normal((3, 2)).astype(np.float32 if be.dtype_name == "float32" else np.float64)
    x = be.asarray(host)
    for other in B.available():
        if other == "cupy" and be.name != "cupy":
            continue
        y = xpnet.to_backend(x, other)
        assert xpnet.backend_name(y) == other
        back = xpnet.to_backend(y, be)
        assert_close(back, host, be, rtol=0, atol=0)


def test_backend_names_of_arrays(be):
    assert xpnet.backend_name(be.asarray([1.0])) == be.name


def test_describe_names_devices_as_users_type_them():
    pytest.importorskip("array_api_strict", reason="array_api_strict not installed")
    info = B.describe("array_api_strict")
    assert {"CPU_DEVICE", "device1", "no_float64"} <= set(info["devices"])
    assert info["float64"]["no_float64"] is False and info["float64"]["device1"] is True
    missing = B.describe("cupy") if not B.installed("cupy") else None
    if missing is not None:
        assert missing["installed"] is False and "xpnet[cuda12]" in missing["why"]
