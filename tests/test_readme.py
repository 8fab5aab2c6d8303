"""The README is a five-minute read that starts with the two set-up commands, and its example runs
as written. What the README and docs/ promise together is checked in test_docs.py."""

import re
import sys
from pathlib import Path

from procs import run

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMMANDS = ["pip install . && xpnet train",
            'pip install -e ".[test,cpu,mpi]" mpich torch==2.13.0 && python -m pytest']


def test_readme_is_at_most_200_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the detail to a page in docs/"


def test_readme_training_example_runs_and_learns(tmp_path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    script = tmp_path / "readme_example.py"
    script.write_text(code)
    out = run([sys.executable, str(script)], timeout=300)
    assert out.returncode == 0, out.stderr
    accuracy = float(out.stdout.split()[-1])
    assert accuracy > 0.95


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    headings = re.findall(r"^## (.*)$", text, re.M)
    assert headings[0] == "Two commands", headings[:2]
    first_block = re.search(r"```(\w*)\n(.*?)```", text, re.S)
    assert first_block.group(1) == "bash"
    assert [c in first_block.group(2) for c in COMMANDS] == [True, True]


def test_readme_two_commands_are_the_ones_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install --quiet -e ".[test,cpu,mpi]" mpich torch==2.13.0' in ci
    assert "python -m pytest" in ci
    assert all(command in README.read_text() for command in COMMANDS)


def test_readme_links_every_docs_page():
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)(?:#[\w-]*)?\)", README.read_text()))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages, "docs/ holds no pages"
    assert pages <= linked, f"README does not link {sorted(pages - linked)}"


def test_readme_has_a_map_of_the_package_naming_its_parts():
    text = README.read_text()
    section = text.split("## Map of the package")[1].split("\n## ")[0]
    for part in ("backend/", "compile/", "train/", "cli/", "registry", "checks", "layers", "optimizers"):
        assert f"`{part}`" in section, f"the map does not name {part}"
    assert not re.search(r"\.py:\d+|line \d+", section), "the map names line numbers, which go stale"
