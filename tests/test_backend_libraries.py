"""One class per array library behind one interface: every library answers the same questions,
an array finds its library, and no module outside ``xpnet/backend/`` asks for a library by name
where the interface answers (parallel's flat gradient buffer)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import backend as B
from xpnet import parallel

ROOT = Path(__file__).resolve().parent.parent
INTERFACE = ["installed", "import_module", "load", "report", "devices", "device", "parse_device", "bad_device",
             "label", "enable_float64", "reports_float64", "owns", "to_numpy", "upload", "like_device", "activate",
             "context_of", "writeable", "sub_scaled_", "materialize", "constant", "shared_buffer", "graph_class"]


def test_every_backend_is_one_library_class_with_the_whole_interface():
    assert tuple(B.LIBRARIES) == B.BACKENDS
    for name in B.BACKENDS:
        lib = B.library(name)
        assert isinstance(lib, B.Library) and lib.name == name and lib.install == B.INSTALL_HINT[name]
        assert all(callable(getattr(lib, m)) for m in INTERFACE), name
        assert type(lib).__module__.startswith("xpnet.backend.") and type(lib).__module__.endswith("_lib")


def test_an_array_finds_its_library(be):
    x = be.asarray(np.arange(3.0))
    assert B.library_of(x) is B.library(be.name) and B.backend_name(x) == be.name
    np.testing.assert_array_equal(B.to_numpy(x), np.arange(3.0, dtype=B.host_dtype(be.dtype)))


def test_arrays_of_no_known_library_get_the_plain_behaviour():
    assert B.backend_name([1.0, 2.0]) == "builtins" and not B.library_of([1.0]).name
    np.testing.assert_array_equal(B.to_numpy([1.0, 2.0]), [1.0, 2.0])
    assert B.materialize(3.0) == 3.0 and B.constant(0.5, [1.0]) == 0.5


class TwoRanks:
    """A communicator whose allreduce is that of two ranks holding the same buffer."""

    rank, size = 0, 2

    def allreduce_(self, buf):
        buf *= 2


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "array_api_strict"])
def test_flat_gradient_buffer_sums_the_shares_on_every_library(name):
    if not B.installed(name):
        pytest.skip(f"{name} is not installed")
    be = xpnet.get_backend(name, dtype="float64")
    params = {"W": be.asarray(np.ones((2, 3))), "b": be.asarray(np.zeros(3))}
    grads = {"W": be.asarray(np.full((2, 3), 3.0)), "b": be.asarray(np.arange(3.0))}
    pack, reduce, views = parallel._flat_buffer(list(params.items()), TwoRanks())
    pack(grads, 0.25)
    reduce()
    out = views(params)
    assert list(out) == ["W", "b"] and B.backend_name(out["W"]) == name
    np.testing.assert_allclose(B.to_numpy(out["W"]), np.full((2, 3), 1.5))
    np.testing.assert_allclose(B.to_numpy(out["b"]), 0.5 * np.arange(3.0))
    pack(None, 0.0)
    reduce()
    assert not np.any(B.to_numpy(views(params)["W"]))


def test_parallel_imports_no_array_library_and_names_none():
    tree = ast.parse((ROOT / "xpnet" / "parallel.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"cupy", "torch", "jax", "array_api_compat"}
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not names & set(B.BACKENDS)


def test_cuda_graph_classes_come_from_the_libraries(be):
    ref = be.asarray(np.zeros(1))
    kind = B.library_of(ref).graph_class(ref)
    on_cuda = be.name == "cupy" or (be.name == "torch" and B.device_label(be.device).startswith("cuda"))
    assert (kind is not None) == on_cuda
    if kind is not None:
        assert all(callable(getattr(kind, m)) for m in ("warmup", "capture", "replay"))
