"""The parity matrix: one fixture, ``be``, runs a test on every backend present.

Rows (backend, device, dtype) come from ``XPNET_TEST_BACKENDS``: comma-separated backend
names, each optionally with a device (``numpy,torch:cuda:0,cupy:cuda:1``); default: every
installed CPU backend, plus cupy when a CUDA device is usable. array_api_strict named
without a device also runs on its simulated ``device1`` and ``no_float64`` devices, so a
forgotten ``device=`` or ``dtype=`` fails on a CPU-only machine. Absent backends, and
devices this machine lacks, are skipped with the reason; an unknown backend name stops the
run with a usage error. ``XPNET_TEST_DTYPES`` limits the dtypes (default: both).

Test ids start with the row, e.g. ``test_x[torch-float32]``; ``ci/matrix.py`` groups the
results into a table by that id and by test module.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import numpy as np
import pytest

from xpnet import backend as B

# A run started under nohup, or as a background job of a non-interactive shell, ignores SIGHUP or
# SIGINT, and an ignored signal stays ignored in every child it starts: the CLI runs that the
# stop-signal tests start would never see the signals they are sent. A handler set here is reset to
# the default in each child at exec (no pre-exec hook, which forks a process jax has threads in), as
# a terminal would give it; this process itself still survives a hang-up.
for _sig, _handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGHUP, lambda *_: None),
                       (signal.SIGTERM, signal.SIG_DFL)):
    if signal.getsignal(_sig) is signal.SIG_IGN:
        signal.signal(_sig, _handler)

# `xpnet train` keeps jax executables in ~/.cache/xpnet/jax; tests (and the CLI runs they start)
# do not touch the user's cache: tests/test_compile_cache.py gives it temporary folders.
os.environ["XPNET_COMPILE_CACHE"] = "off"
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)

try:  # pin the standard version once for the process, never per call
    import array_api_strict

    array_api_strict.set_array_api_strict_flags(api_version="2024.12")
except ImportError:
    pass


@dataclass(frozen=True)
class Row:
    backend: str
    device: str | None
    dtype: str

    @property
    def id(self) -> str:
        dev = f"@{self.device}" if self.device else ""
        return f"{self.backend}{dev}-{self.dtype}"


def _rows(wanted: str | None = None) -> list[Row]:
    """The matrix rows named by ``wanted`` (default: ``$XPNET_TEST_BACKENDS``)."""
    if wanted is None:
        wanted = os.environ.get("XPNET_TEST_BACKENDS", "")
    entries = [e.strip() for e in wanted.split(",") if e.strip()]
    pairs = [(n.strip(), d.strip() or None) for n, _, d in (e.partition(":") for e in entries)] or [
        (n, None) for n in B.BACKENDS if n != "cupy" or _cupy_usable()
    ]
    dtypes = [d.strip() for d in os.environ.get("XPNET_TEST_DTYPES", "float32,float64").split(",")]
    rows = []
    for name, device in pairs:
        for dt in dtypes:
            rows.append(Row(name, device, dt))
        if name == "array_api_strict" and device is None:
            rows.append(Row(name, "device1", "float32"))
            rows.append(Row(name, "no_float64", "float32"))
    return rows


def _cupy_usable() -> bool:
    if not B.installed("cupy"):
        return False
    try:
        B.resolve("cupy")
        return True
    except B.BackendError:
        return False


ROWS = _rows()


def pytest_configure(config):
    unknown = sorted({r.backend for r in ROWS} - set(B.BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"XPNET_TEST_BACKENDS names unknown backend(s) {unknown}; valid: {', '.join(B.BACKENDS)}, "
            "each optionally with a device, e.g. torch:cuda:0"
        )


@pytest.fixture(params=ROWS, ids=[r.id for r in ROWS])
def be(request) -> B.Backend:
    """The row's resolved :class:`xpnet.Backend` (namespace ``xp``, ``device``, ``dtype``)."""
    row: Row = request.param
    request.node.user_properties.append(("backend", row.id))
    if not B.installed(row.backend):
        pytest.skip(f"{row.backend} is not installed ({B.INSTALL_HINT[row.backend]})")
    try:
        return B.resolve(row.backend, row.device, row.dtype)
    except B.BackendUnavailableError as e:
        pytest.skip(f"{row.backend} cannot run here: {e}")


@pytest.fixture(scope="module")
def shared_jax_executables(tmp_path_factory):
    """For a module whose tests compile the same jax programs again and again: jax's persistent
    compile cache, in a folder of the module's own, compiles each program once. Its key is the
    compiled program itself, so a step traced after a change is never handed an executable of
    another program; jax's settings are put back afterwards. Use with
    ``pytestmark = pytest.mark.usefixtures("shared_jax_executables")``."""
    if not B.installed("jax"):
        yield
        return
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    from xpnet.compile import use_cache

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    saved = {name: getattr(jax.config, name) for name in names}
    compilation_cache.reset_cache()
    folder, why = use_cache(tmp_path_factory.mktemp("jax-cache"))
    assert folder is not None, why
    try:
        yield
    finally:
        compilation_cache.reset_cache()
        for name, value in saved.items():
            jax.config.update(name, value)


@pytest.fixture
def clean_choice(monkeypatch):
    """No XPNET_BACKEND / XPNET_DEVICE / XPNET_DTYPE and no process-wide set_backend choice."""
    for var in ("XPNET_BACKEND", "XPNET_DEVICE", "XPNET_DTYPE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(B.choice, "_process", {})
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def tol(be: B.Backend) -> dict:
    """Tolerances against a float64 NumPy reference, per dtype."""
    return {"rtol": 1e-4, "atol": 1e-5} if be.dtype_name == "float32" else {"rtol": 1e-10, "atol": 1e-12}


def assert_close(actual, expected, be: B.Backend, **kw) -> None:
    """Check namespace, device, dtype and shape of ``actual``, then its values.

    ``expected`` is a host NumPy array (the float64 reference).
    """
    assert B.namespace(actual) is be.xp, f"namespace {B.backend_name(actual)} is not {be.name}"
    assert B.device(actual) == be.device, f"device {B.device(actual)} is not {be.device}"
    expected = np.asarray(expected)
    if expected.dtype.kind == "f":
        assert actual.dtype == be.dtype, f"dtype {actual.dtype} is not {be.dtype}"
    assert tuple(actual.shape) == expected.shape, f"shape {tuple(actual.shape)} != {expected.shape}"
    np.testing.assert_allclose(B.to_numpy(actual), expected, **{**tol(be), **kw})


def tally(kind: str, n: int = 1) -> None:
    """Count what a robustness test tried (hostile inputs, kills, resumes) for ci/robustness.py.

    Appends ``kind<TAB>n`` to the file named by ``XPNET_ROBUSTNESS_LOG`` when it is set.
    """
    path = os.environ.get("XPNET_ROBUSTNESS_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{kind}\t{n}\n")
