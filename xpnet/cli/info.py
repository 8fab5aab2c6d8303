"""``xpnet info``: the xpnet version, every backend (installed? version, devices, float64), the
extras, compiling, its cache and MPI; as lines, or as JSON."""

from __future__ import annotations

import json
import os
import platform

from ..backend import BACKENDS
from ..errors import XPNetError
from .output import say


def cmd_info(args) -> int:
    report = _report()
    if report["mpi"].get("rank", 0) != 0:  # under mpiexec: rank 0 reports for the job
        return 0
    report["backends"] = _backends()
    if args.json:
        say(json.dumps(report, indent=1, default=str))
    else:
        _print(report)
    return 0


def _report() -> dict:
    """Everything but the backends: versions, extras, compiling and its cache, MPI."""
    import importlib.util

    import array_api_compat
    import numpy as np

    from .. import __version__
    from ..compile import BACKEND_SUMMARY, cache_setting
    from ..parallel import mpi_info

    report = {
        "xpnet": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "array_api_compat": array_api_compat.__version__,
        "XPNET_BACKEND": os.environ.get("XPNET_BACKEND"),
        "backends": [],
        "extras": {m: importlib.util.find_spec(m) is not None for m in ("tqdm", "matplotlib", "onnx", "safetensors")},
        "compile": dict(BACKEND_SUMMARY),
    }
    try:
        folder, why = cache_setting()
        report["compile_cache"] = {"folder": None if folder is None else str(folder), "state": why}
    except XPNetError as e:
        report["compile_cache"] = {"folder": None, "state": str(e)}
    try:
        report["mpi"] = mpi_info()
    except Exception as e:  # a broken MPI install must not hide the rest
        report["mpi"] = {"installed": True, "usable": False, "why": f"{type(e).__name__}: {e}"}
    return report


def _backends() -> list[dict]:
    from ..backend import describe

    found = []
    for name in BACKENDS:
        try:
            found.append(describe(name))
        except Exception as e:  # a broken install must not hide the others
            found.append({"backend": name, "installed": True, "usable": False, "why": f"{type(e).__name__}: {e}"})
    return found


def _backend_line(b: dict) -> str:
    if not b.get("installed"):
        return f"  {b['backend']:<17} not installed  ({b.get('why', '')})"
    line = f"  {b['backend']:<17} {b.get('version', '?'):<12}"
    if "cuda_driver" in b or "cuda_runtime" in b:
        line += f" CUDA driver {b.get('cuda_driver')}, runtime {b.get('cuda_runtime')};"
    if b.get("usable"):
        f64 = b.get("float64", {})
        line += f" devices {', '.join(b.get('devices', []))}; float64: " + ", ".join(
            f"{d} {'yes' if ok else 'no'}" for d, ok in f64.items()
        )
    else:
        line += f" NOT USABLE: {b.get('why')}"
    return line


def _print(report: dict) -> None:
    say(
        f"xpnet {report['xpnet']}  (python {report['python']}, numpy {report['numpy']}, "
        f"array-api-compat {report['array_api_compat']})"
    )
    say(f"platform: {report['platform']}")
    say(f"XPNET_BACKEND={report['XPNET_BACKEND'] or '(unset: numpy)'}")
    for b in report["backends"]:
        say(_backend_line(b))
    say(
        "extras: "
        + ", ".join(f"{m} {'installed' if ok else 'missing'}" for m, ok in report["extras"].items())
        + ("" if all(report["extras"].values()) else "  (pip install 'xpnet[progress,plot,export]')")
    )
    say("compile (--compile): " + "; ".join(f"{k}: {v}" for k, v in report["compile"].items())
        + "; others: eager")
    cache = report["compile_cache"]
    say(f"compile cache (jax executables kept by xpnet train): {cache['folder'] or 'off'}"
        + ("" if cache["folder"] else f" ({cache['state']})"))
    mpi = report["mpi"]
    if not mpi.get("installed") or "why" in mpi:
        say(f"mpi: not available ({mpi.get('why')})")
    else:
        say(f"mpi: mpi4py {mpi['mpi4py']}, {mpi['library']} (MPI {mpi['standard']}); this job: "
            f"{mpi['size']} rank{'s' if mpi['size'] != 1 else ''}; CuPy gradients: {mpi['nccl']}")
