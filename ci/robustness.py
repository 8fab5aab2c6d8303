"""Check xpnet's guarantees under hostile inputs and faults, and print what was tried.

    python ci/robustness.py          # hostile inputs, SIGKILL, SIGINT, SIGTERM, full/read-only disk, resumes, --out

Runs the tests in FILES (hostile inputs to the library, the CLI and the backend seam; faults;
lost work) on every backend present, with each test counting what it threw at xpnet, then
prints the totals. Exit code: pytest's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = [  # the tests that attack xpnet: hostile inputs, faults, lost work
    "tests/test_hostile.py", "tests/test_hostile_lib.py", "tests/test_hostile_cli.py",
    "tests/test_backend_seam.py", "tests/test_faults.py", "tests/test_lost_work.py", "tests/test_parallel.py",
    "tests/test_compile.py", "tests/test_graphs.py", "tests/test_export.py", "tests/test_stale.py",
    "tests/test_interrupts.py", "tests/test_resume_exact.py", "tests/test_outputs.py",
]


def main() -> int:
    log = Path(tempfile.mkdtemp(prefix="xpnet-robustness-")) / "tally.tsv"
    env = {**os.environ, "XPNET_ROBUSTNESS_LOG": str(log)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES, *sys.argv[1:]]
    print("$", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    counts: Counter = Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            kind, n = line.split("\t")
            counts[kind] += int(n)
    print()
    print("| guarantee checked | count |")
    print("|---|---|")
    for kind in ("hostile inputs", "kills survived", "resumes compared"):
        print(f"| {kind} | {counts[kind]} |")
    print(f"\npytest exit code {rc} ({'all held' if rc == 0 else 'SOME GUARANTEE FAILED'})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
