"""Run the parity matrix and print it as a table: backend row x test group.

    python ci/matrix.py                 # every backend present (see tests/conftest.py)
    XPNET_TEST_BACKENDS=cupy,torch:cuda:0 python ci/matrix.py --out ci/matrix-gpu.md
    XPNET_TEST_BACKENDS=cupy:cuda:1 python ci/matrix.py  # a second GPU

A backend may name its device (``torch:cuda:0``, ``cupy:cuda:1``); the row is then called
``torch@cuda:0-float32``. A named device this host lacks skips its rows with the reason.

Each cell is ``passed/failed/skipped``. Tests that do not take a backend row are counted
in the row ``(any)``. Extra arguments after ``--`` go to pytest. Exit code: pytest's.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_pytest(extra: list[str]) -> tuple[int, Path]:
    xml = Path(tempfile.mkdtemp(prefix="xpnet-matrix-")) / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
           "-o", "junit_logging=no", *extra]
    print("$", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    return rc, xml


def tabulate(xml: Path) -> tuple[list[str], list[str], dict]:
    counts: dict = defaultdict(lambda: [0, 0, 0])
    for case in ET.parse(xml).getroot().iter("testcase"):
        group = case.get("classname", "").split(".")[-1].removeprefix("test_")
        row = "(any)"
        for prop in case.iter("property"):
            if prop.get("name") == "backend":
                row = prop.get("value")
        outcome = 0
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = 1
        elif case.find("skipped") is not None:
            outcome = 2
        counts[(row, group)][outcome] += 1
    rows = sorted({r for r, _ in counts}, key=lambda r: (r == "(any)", r))
    groups = sorted({g for _, g in counts})
    return rows, groups, counts


def render(rows, groups, counts) -> str:
    head = "| backend | " + " | ".join(groups) + " | total |"
    lines = [head, "|" + "---|" * (len(groups) + 2)]
    for r in rows:
        cells, tot = [], [0, 0, 0]
        for g in groups:
            c = counts.get((r, g))
            if c is None:
                cells.append("")
                continue
            tot = [a + b for a, b in zip(tot, c)]
            cells.append(_cell(c))
        lines.append(f"| {r} | " + " | ".join(cells) + f" | {_cell(tot)} |")
    lines.append("")
    lines.append("Cells: passed/failed/skipped. " + _where())
    return "\n".join(lines)


def _cell(c) -> str:
    p, f, s = c
    mark = "FAIL " if f else ""
    return f"{mark}{p}/{f}/{s}"


def _where() -> str:
    import numpy

    bits = [f"python {platform.python_version()}", f"numpy {numpy.__version__}"]
    for mod in ("array_api_strict", "torch", "jax", "dask", "cupy"):
        try:
            m = __import__(mod)
            bits.append(f"{mod} {m.__version__}")
        except Exception:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = os.environ.get("XPNET_MATRIX_GPU", "")
    return f"Host: {cpu}, {os.cpu_count()} cores{', ' + gpu if gpu else ''}; " + ", ".join(bits) + "."


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    ap.add_argument("--from-xml", help="tabulate an existing pytest --junitxml report instead of running")
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest (put them after --)")
    args = ap.parse_args(argv)
    if args.from_xml:
        rc, xml = 0, Path(args.from_xml)
    else:
        rc, xml = run_pytest(args.pytest_args)
    if not xml.exists():
        print("pytest wrote no report", file=sys.stderr)
        return rc or 1
    table = render(*tabulate(xml))
    print()
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
