"""``xpnet bench --quick``: the table and the JSON have the documented structure.

No timing is asserted here (speed targets are shown in the benchmark's table, never asserted
in unit tests): only that the run completes, every contender is timed, and the report says
which targets were checked.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import tally
from procs import run

from xpnet import bench


def test_quick_run_writes_table_and_json(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    rc = bench.main(["--quick", "--backends", "numpy", "--workloads", "W1,W3", "--no-memory",
                     "--json", str(out), "--markdown", str(md)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert set(result["cpu"]) == {"W1", "W3"}
    for w in ("W1", "W3"):
        timings = result["cpu"][w]["timings"]
        assert {"numpy textbook", "numpy buffers", "xpnet ops inlined", "xpnet[numpy]"} <= set(timings)
        for t in timings.values():
            assert t["epoch_s"] > 0 and len(t["samples_s"]) == result["repeats"]
            assert 0 < t["steps_timed"] <= t["steps_per_epoch"]
        assert result["cpu"][w]["floor_epoch_s"] > 0
    assert result["matmul_flops"]["best"] > 0
    assert result["machine"]["cores"] >= 1 and result["threads"]["requested"] == 1
    names = [t["target"] for t in result["targets"]]
    assert any("W1: xpnet[numpy] no slower" in n for n in names)
    assert any(n.startswith("W3:") for n in names)
    assert all(t["met"] in (True, False) for t in result["targets"] if "informative" not in t["target"])
    text = md.read_text()
    assert "| W1 | xpnet[numpy] |" in text and "floor" in text and "### Targets" in text
    assert "| CPU s / wall s |" in text.splitlines()[2]
    assert result["pinned_to"] is not None and len(result["pinned_to"]) == 1
    assert_held_to_its_threads(result)
    if result.get("gpu_skipped"):
        assert any("GPU table skipped" in n for n in result["notes"])


def assert_held_to_its_threads(result):
    threads = result["threads"]["requested"]
    for w, res in result["cpu"].items():
        for name, t in res["timings"].items():
            assert 0 < t["cpu_per_wall"] <= threads + 0.1, (w, name, t["cpu_per_wall"])
    target = [t for t in result["targets"] if t["target"].startswith("every row: CPU s / wall s")]
    assert len(target) == 1 and target[0]["met"] is True


@pytest.mark.skipif(not bench.B.installed("jax"), reason="jax is not installed")
def test_pinned_jax_rows_use_at_most_their_one_core(tmp_path):
    """XLA runs work on a second core despite its one-thread flags: pinned, every row, the
    compiled ones and the README-loop ones included, uses at most one core's CPU seconds."""
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    rc = bench.main(["--quick", "--backends", "numpy,jax", "--workloads", "W3", "--no-memory",
                     "--repeats", "2", "--json", str(out), "--markdown", str(md)])
    assert rc == 0
    result = json.loads(out.read_text())
    timings = result["cpu"]["W3"]["timings"]
    assert {"xpnet[jax] compiled step", "xpnet[jax] compiled epoch", "xpnet[jax] step.epoch",
            "xpnet[jax] compiled step, README loop", "numpy textbook, README loop",
            "xpnet[numpy] README loop"} <= set(timings)
    assert_held_to_its_threads(result)
    for line in md.read_text().splitlines():
        if line.startswith("| W3 | xpnet[jax]"):
            assert float(line.rstrip(" |").rsplit("|", 1)[1]) <= 1.1, line


def test_pinned_holds_every_thread_and_gives_the_mask_back():
    import os
    import threading

    from xpnet.bench import cores

    if not cores.CAN_PIN:
        pytest.skip("no sched_setaffinity here")
    before = os.sched_getaffinity(0)
    one = (max(before),)
    seen, go = {}, threading.Event()

    def worker():
        go.wait(10)
        seen["mask"] = os.sched_getaffinity(threading.get_native_id())

    th = threading.Thread(target=worker)
    th.start()  # started before the pinning: sched_setaffinity(0, ...) alone would miss it
    with cores.pinned(one):
        go.set()
        th.join(10)
        assert os.sched_getaffinity(0) == set(one)
    assert seen["mask"] == set(one)
    assert os.sched_getaffinity(0) == before


def test_cpu_clock_counts_the_cpu_seconds_of_a_timed_part():
    import time

    from xpnet.bench.cores import CpuClock

    clock = CpuClock()
    with clock.timing():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.05:  # busy: one core
            pass
    with clock.timing():
        time.sleep(0.05)  # idle
    assert 0 < clock.cpu <= clock.wall + 0.01 and clock.wall >= 0.1  # a shared machine: no lower bound


def test_the_bench_imports_nothing_from_the_command_line():
    code = "import sys, xpnet.bench; print(sorted(m for m in sys.modules if m.startswith('xpnet.cli')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_workload_flops_count_the_needed_matmuls():
    w1 = bench.WORKLOADS["W1"]
    # forward + weight gradients of both layers, input gradient of the second only
    assert w1.flops() == 100 * (3 * 2 * 784 * 100 + 3 * 2 * 100 * 10 - 2 * 784 * 100)
    assert w1.steps_per_epoch == 600


def test_unknown_workload_is_an_error():
    assert bench.main(["--quick", "--workloads", "W9", "--threads", "1", "--no-memory"]) == 2


@pytest.mark.parametrize("flags,says", [
    (["--threads", "0"], "--threads: expected a positive integer, got '0'"),
    (["--threads", "-2"], "--threads: expected a positive integer, got '-2'"),
    (["--threads", "1.5"], "--threads: expected a positive integer"),
    (["--repeats", "0"], "--repeats: expected a positive integer"),
    (["--backends", "tensorflow"], "unknown backend(s) ['tensorflow']"),
    (["--backends", ","], "--backends ','"),
    (["--json", "{tmp}/missing/x.json"], "does not exist; create it first"),
    (["--markdown", "{tmp}"], "is a folder"),
    (["--cpus", "99999"], "not available to this process"),
    (["--cpus", "0,x"], "expected core ids"),
])
def test_bad_flags_are_usage_errors_before_anything_is_measured(flags, says, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "run", lambda args: pytest.fail("measured despite bad flags"))
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    assert bench.main(["--quick", "--no-memory", *flags]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    tally("hostile inputs")


def test_bad_thread_environment_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("XPNET_BENCH_THREADS", "zero")
    monkeypatch.setattr(bench, "run", lambda args: pytest.fail("measured despite bad XPNET_BENCH_THREADS"))
    assert bench.main(["--quick"]) == 2
    assert "XPNET_BENCH_THREADS: expected a positive integer, got 'zero'" in capsys.readouterr().err


def test_xpnet_bench_bad_flag_from_the_command_line_has_no_traceback(tmp_path):
    p = run([sys.executable, "-m", "xpnet", "bench", "--threads", "0", "--json", str(tmp_path / "no" / "x.json")],
            timeout=120)
    err = p.stderr
    assert p.returncode == 2 and "--threads" in err and "Traceback" not in err, err


def test_results_are_written_before_the_table(tmp_path, monkeypatch, capsys):
    """A bug in the table must not lose the measurements."""
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # measure in this process
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    monkeypatch.setattr(bench, "table", lambda result: 1 / 0)
    out = tmp_path / "bench.json"
    rc = bench.main(["--quick", "--backends", "numpy", "--workloads", "W3", "--no-memory", "--threads", "1",
                     "--json", str(out)])
    assert rc == 1 and "the results are in" in capsys.readouterr().err
    assert "xpnet[numpy]" in json.loads(out.read_text())["cpu"]["W3"]["timings"]


def _gpu_result():
    t = {"steps_timed": 10, "steps_per_epoch": 600}
    return {"cpu": {}, "gpu": {"W1": {"workload": "W1", "timings": {
        "xpnet[cupy]": {"epoch_s": 0.30, **t}, "torch native CUDA": {"epoch_s": 0.20, **t}}}},
        "errors": {"W1 xpnet[torch cuda:0]": "RuntimeError: CUDA error: out of memory"},
        "targets": [], "notes": []}


def test_table_takes_gpu_rows_without_a_floor_and_shows_errors():
    text = bench.table(_gpu_result())
    assert "| W1 | xpnet[cupy] | 0.3000 | - | 1.50x | - |" in text
    assert "floor (FLOPs" not in text  # no floor row where no floor was measured
    assert "- W1 xpnet[torch cuda:0]: RuntimeError: CUDA error: out of memory" in text


class Failing(bench.Contender):
    def __init__(self, name, when):
        self.name, self.when, self.calls = name, when, 0

    def step(self, i):
        self.calls += 1
        if self.calls > self.when:
            raise RuntimeError(f"{self.name} kernel failed")


def test_a_failing_contender_is_dropped_and_its_error_kept_under_its_own_name():
    w = bench.Workload("W3", "tiny", (4, 3, 2), 40, 4)
    errors = {}
    timings = bench.measure(w, [Failing("a", 0), Failing("b", 2), Failing("ok", 10**9)], 3, 1, errors)
    assert set(timings) == {"ok"} and len(timings["ok"]["samples_s"]) == 3
    assert errors == {"W3 a": "RuntimeError: a kernel failed", "W3 b": "RuntimeError: b kernel failed"}


def test_both_gpu_contenders_errors_are_kept():
    def boom(msg):
        def make(w, X, T):
            raise RuntimeError(msg)
        return make

    errors = {}
    w = bench.Workload("W3", "tiny", (4, 3, 2), 40, 4)
    out = bench.contenders_for(w, None, None, [], {"xpnet[cupy]": boom("no nvrtc"),
                                                    "torch native CUDA": boom("no cuda")}, errors)
    assert out == [] and errors == {"W3 xpnet[cupy]": "RuntimeError: no nvrtc",
                                    "W3 torch native CUDA": "RuntimeError: no cuda"}


def test_runs_as_a_module():
    r = subprocess.run([sys.executable, "-m", "xpnet.bench", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--quick" in r.stdout


def test_inlined_ops_contender_trains_exactly_like_xpnet():
    """The overhead measure is only fair if the flat step does xpnet's very arithmetic."""
    from xpnet import bench

    w = bench.Workload("W3", "tiny", (64, 20, 10), 96, 32)
    X, T = bench.make_data(w)
    a, b = bench.XPNet(w, X, T, "numpy"), bench.XPNetOpsInlined(w, X, T)
    for i in range(6):
        a.step(i % 3)
        b.step(i % 3)
    for k, (W, bias) in enumerate(b.params):  # the very same arithmetic: bit for bit
        np.testing.assert_array_equal(a.model.params[f"W{k + 1}"], W)
        np.testing.assert_array_equal(a.model.params[f"b{k + 1}"], bias)
