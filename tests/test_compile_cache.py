"""The compile cache ``xpnet train`` keeps for jax (xpnet.compile.use_cache): what it decides,
that a cached run gives the same numbers without compiling anew, that a damaged entry heals,
and that a folder it cannot use is a note, never a failure. Runs that touch jax's global
configuration happen in child processes (tests/procs.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from procs import run, xpnet

from xpnet import compile as C
from xpnet.compile import cache as CC
from xpnet.errors import ConfigError

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")


@pytest.fixture
def env(monkeypatch):
    """A clean view of the variables use_cache reads (restored afterwards)."""
    for var in ("XPNET_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_default_folder_follows_xdg_cache_home(env, tmp_path):
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert C.cache_dir_default() == tmp_path / "xdg" / "xpnet" / "jax"
    env.setenv("XDG_CACHE_HOME", "  ")
    assert C.cache_dir_default() == Path.home() / ".cache" / "xpnet" / "jax"


@pytest.mark.parametrize("value", ["off", "OFF", "0", "no", "none", "false", ""])
def test_turned_off_by_the_variable(env, value):
    env.setenv("XPNET_COMPILE_CACHE", value)
    folder, why = C.use_cache()
    assert folder is None and "turned off" in why and "XPNET_COMPILE_CACHE" in why


def test_jax_own_setting_is_left_in_charge(env, tmp_path):
    env.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "theirs"))
    env.setenv("XPNET_COMPILE_CACHE", str(tmp_path / "ours"))
    folder, why = C.use_cache()
    assert folder is None and "JAX_COMPILATION_CACHE_DIR" in why
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "theirs")
    assert not (tmp_path / "ours").exists()


def test_a_folder_under_a_file_is_refused_with_the_fix_and_nothing_is_created(env, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("data")
    env.setenv("XPNET_COMPILE_CACHE", str(blocker / "sub" / "jax"))
    folder, why = C.use_cache()
    assert folder is None
    assert repr(str(blocker)) in why and "is a file" in why and "XPNET_COMPILE_CACHE" in why
    assert blocker.read_text() == "data"
    folder, why = C.use_cache(blocker)
    assert folder is None and "is a file" in why


def test_a_read_only_folder_is_refused(env, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    # root writes into read-only folders anyway, so the permission answer is simulated for this folder
    real = os.access
    env.setattr(CC.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    folder, why = C.use_cache(ro / "jax")
    assert folder is None and "read-only" in why and repr(str(ro)) in why
    assert not (ro / "jax").exists()


@pytest.mark.parametrize("bad", ["", "   ", 3, 2.5, ["a"], b"x"])
def test_bad_paths_are_config_errors(env, bad):
    with pytest.raises(ConfigError, match="expected a folder path"):
        C.use_cache(bad)


# ---------------------------------------------------------------------- end to end, in child processes
def _train(tmp_path, name, cache, backend="jax", epochs=3):
    env = {**os.environ, "XPNET_COMPILE_CACHE": str(cache), "JAX_LOG_COMPILES": "0"}
    out = tmp_path / name
    done = run(xpnet("train", "--backend", backend, "--epochs", epochs, "--out", out, "--no-plot"), timeout=240,
               env=env)
    assert done.returncode == 0, done.stderr
    return done, json.loads((out / "history.json").read_text())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One jax run into a fresh cache: its history, the cache folder it filled, and a copy of
    that folder as the run left it (see :func:`cache_of`)."""
    root = tmp_path_factory.mktemp("first")
    cache = root / "cache"
    _, history = _train(root, "a", cache)
    pristine = shutil.copytree(cache, root / "pristine")
    return history, cache, pristine


def cache_of(first_run):
    """The first run's cache folder, put back as that run left it. Its path stays the same: the
    names (keys) of jax's entries change with the folder's path (measured: a copy elsewhere
    is read as empty)."""
    _, cache, pristine = first_run
    shutil.rmtree(cache)
    return Path(shutil.copytree(pristine, cache))


def _strip_times(history):
    """The records without their timings (the only thing a cache may change)."""
    records = history["epochs"]
    return [{k: v for k, v in rec.items() if k not in ("seconds", "compile_seconds")} for rec in records]


@needs_jax
def test_a_cached_run_gives_the_same_numbers_and_writes_no_new_entries(tmp_path, first_run):
    first, cache = first_run[0], cache_of(first_run)
    entries = sorted(p.name for p in cache.iterdir())
    assert any(name.startswith("jit_pure_epoch") for name in entries), entries
    _, second = _train(tmp_path, "b", cache)
    assert sorted(p.name for p in cache.iterdir()) == entries  # every executable came from the cache
    assert _strip_times(second) == _strip_times(first)
    _, uncached = _train(tmp_path, "c", "off")
    assert _strip_times(uncached) == _strip_times(first)


@needs_jax
def test_a_damaged_entry_is_a_note_then_healed(tmp_path, first_run):
    first, cache = first_run[0], cache_of(first_run)
    for entry in cache.iterdir():  # files cut short by a full disk or a kill: the step's and eager ops'
        entry.write_bytes(entry.read_bytes()[:500])
    done, second = _train(tmp_path, "b", cache)
    assert "note: the compile cache" in done.stdout and "could not be read" in done.stdout
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr
    assert _strip_times(second) == _strip_times(first)
    done, third = _train(tmp_path, "c", cache)  # rewritten by the second run: read cleanly now
    assert "note:" not in done.stdout and "Warning" not in done.stderr
    [healed] = [p for p in cache.iterdir() if p.name.startswith("jit_pure_epoch")]
    assert healed.stat().st_size > 500
    assert _strip_times(third) == _strip_times(first)


@needs_jax
def test_an_entry_that_is_a_folder_is_removed_and_rewritten(tmp_path, first_run):
    """A folder where an executable's file should be (a copy gone wrong): jax can neither read nor
    replace it; it is removed when the next run starts, not reported as '0 file(s) removed' and
    kept on every run."""
    first, cache = first_run[0], cache_of(first_run)
    for entry in cache.iterdir():
        entry.unlink()
        (entry / "inside").mkdir(parents=True)
    done, second = _train(tmp_path, "b", cache)
    assert "0 file(s) removed" not in done.stdout and "Warning" not in done.stderr, done.stdout
    assert _strip_times(second) == _strip_times(first)
    assert not any(p.is_dir() for p in cache.iterdir())
    assert any(p.name.startswith("jit_pure_epoch") for p in cache.iterdir())  # written afresh
    done, _ = _train(tmp_path, "c", cache)
    assert "note:" not in done.stdout and "Warning" not in done.stderr


@needs_jax
def test_an_unusable_folder_is_a_note_and_the_run_goes_on(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("data")
    done, history = _train(tmp_path, "a", blocker / "jax")
    assert "note: compiled executables are not kept between runs" in done.stderr
    assert "is a file" in done.stderr and "Traceback" not in done.stderr
    assert blocker.read_text() == "data" and len(_strip_times(history)) == 3


def test_a_numpy_run_leaves_the_cache_folder_alone(tmp_path):
    cache = tmp_path / "cache"
    done, _ = _train(tmp_path, "a", cache, backend="numpy", epochs=1)
    assert not cache.exists()


@needs_jax
def test_use_cache_before_jax_is_imported_reaches_jax(tmp_path):
    code = (
        "import sys, xpnet.compile as C\n"
        f"folder, why = C.use_cache({str(tmp_path / 'c')!r})\n"
        "assert 'jax' not in sys.modules, 'use_cache imported jax'\n"
        "import jax, jax.numpy as jnp\n"
        "assert jax.config.jax_compilation_cache_dir == str(folder), jax.config.jax_compilation_cache_dir\n"
        "jax.jit(lambda x: x * 2 + 1)(jnp.ones(3)).block_until_ready()\n"
        "print(why)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    done = run([sys.executable, "-c", code], timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "on", done.stderr
    assert any((tmp_path / "c").iterdir())


INFO = "compile cache (jax executables kept by xpnet train): "


@pytest.mark.parametrize("setting, expect", [("off", INFO + "off (turned off by XPNET_COMPILE_CACHE=off)"),
                                             ("{tmp}/c", INFO + "{tmp}/c")])
def test_info_says_where_the_cache_is(env, tmp_path, capsys, setting, expect):
    from xpnet import cli

    env.setenv("XPNET_COMPILE_CACHE", setting.format(tmp=tmp_path))
    assert cli.main(["info"]) == 0
    out = capsys.readouterr()[0]
    assert expect.format(tmp=tmp_path) in out
    assert "compile (--compile): jax: jax.jit (--compile auto and on); cupy: CUDA graph (--compile on only" in out
    assert not (tmp_path / "c").exists()
    assert cli.main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr()[0])
    assert report["compile_cache"]["folder"] == (None if setting == "off" else str(tmp_path / "c"))
