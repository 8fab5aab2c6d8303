"""The README's code runs as written and its promises match the code."""

import re
import sys
from pathlib import Path

import pytest
from procs import run

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_training_example_runs_and_learns(tmp_path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    script = tmp_path / "readme_example.py"
    script.write_text(code)
    out = run([sys.executable, str(script)], timeout=300)
    assert out.returncode == 0, out.stderr
    accuracy = float(out.stdout.split()[-1])
    assert accuracy > 0.95


def test_readme_documents_every_environment_variable_the_code_reads():
    text = README.read_text()
    root = README.parent
    used = set()
    for path in list((root / "xpnet").rglob("*.py")) + list((root / "examples").glob("*.py")) + \
            [root / "tests" / "conftest.py"]:
        used |= set(re.findall(r"XPNET_[A-Z_]+", path.read_text()))
    missing = sorted(v for v in used if f"`{v}`" not in text)
    assert not missing, f"README does not document {missing}"


@pytest.mark.parametrize("command", ["pip install . && xpnet train",
                                     'pip install -e ".[test,cpu,mpi]" mpich torch==2.13.0 && python -m pytest'])
def test_readme_two_commands_are_the_ones_ci_runs(command):
    assert command in README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    if "pytest" in command:
        assert 'pip install --quiet -e ".[test,cpu,mpi]" mpich torch==2.13.0' in ci and "python -m pytest" in ci
