"""Check xpnet's guarantees under hostile inputs and faults, and print what was tried.

    python ci/robustness.py          # hostile inputs, SIGKILLs, SIGINT, full/read-only disk, resumes

Runs tests/test_hostile.py and tests/test_faults.py on every backend present, with each test
counting what it threw at xpnet, then prints the totals. Exit code: pytest's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    log = Path(tempfile.mkdtemp(prefix="xpnet-robustness-")) / "tally.tsv"
    env = {**os.environ, "XPNET_ROBUSTNESS_LOG": str(log)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "tests/test_hostile.py", "tests/test_faults.py", *sys.argv[1:]]
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
