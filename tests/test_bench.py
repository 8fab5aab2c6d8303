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
    if result.get("gpu_skipped"):
        assert any("GPU table skipped" in n for n in result["notes"])


def test_workload_flops_count_the_needed_matmuls():
    w1 = bench.WORKLOADS["W1"]
    # forward + weight gradients of both layers, input gradient of the second only
    assert w1.flops() == 100 * (3 * 2 * 784 * 100 + 3 * 2 * 100 * 10 - 2 * 784 * 100)
    assert w1.steps_per_epoch == 600


def test_unknown_workload_is_an_error():
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--workloads", "W9", "--threads", "1", "--no-memory"])


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
    for k, (W, bias) in enumerate(b.params):  # the same arithmetic up to the last bits of log-softmax
        np.testing.assert_allclose(a.model.params[f"W{k + 1}"], W, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(a.model.params[f"b{k + 1}"], bias, rtol=1e-5, atol=1e-7)
