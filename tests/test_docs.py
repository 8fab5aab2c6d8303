"""What the README and the pages in docs/ say, read together, matches the code and ci/: their
snippets run as written, their links resolve, every environment variable the code reads is
documented, the extras are pyproject's, and the numbers are those of the ci/ result files."""

import glob
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from procs import run, xpnet

from xpnet import datasets

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def text() -> str:
    """README and every docs page, one after the other."""
    return "\n\n".join(p.read_text() for p in PAGES)


def prose(page: Path) -> str:
    """A page without its fenced code blocks."""
    return re.sub(r"```.*?```", "", page.read_text(), flags=re.S)


def _table(markdown: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the first Markdown table whose header line starts with
    ``header_start`` (the table ends at the first line that is not a row)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip().strip("|").split("|")])
    return table[0], table[2:]


# ------------------------------------------------------------------ what the docs are made of
def test_docs_pages_each_start_with_a_title():
    for page in PAGES[1:]:
        assert page.read_text().startswith("# "), f"{page.name} does not start with a '# ' title"


def test_docs_document_every_environment_variable_the_code_reads():
    """Every XPNET_* variable named in the package, the examples, the test configuration and ci/,
    and every variable the package reads by name (os.environ.get / os.environ[...] / os.getenv)."""
    sources = [*(ROOT / "xpnet").rglob("*.py"), *(ROOT / "examples").glob("*.py"),
               ROOT / "tests" / "conftest.py", *(ROOT / "ci").glob("*.py"), *(ROOT / "ci").glob("*.sh")]
    used = set()
    for path in sources:
        code = path.read_text()
        used |= set(re.findall(r"XPNET_[A-Z_]+", code))
        if ROOT / "xpnet" in path.parents:
            used |= set(re.findall(r"""(?:environ\.get\(|environ\[|getenv\()\s*["']([A-Z][A-Z0-9_]*)["']""", code))
    assert "XPNET_BACKEND" in used and "XDG_CACHE_HOME" in used  # the search finds what it looks for
    docs = text()
    missing = sorted(v for v in used if f"`{v}`" not in docs)
    assert not missing, f"neither README nor docs/ documents {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#+ (.*)$", prose(page), re.M):
        slug = _slug(heading)
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_slug_is_githubs():
    assert _slug("Robustness: xpnet never lies and never loses work") == \
        "robustness-xpnet-never-lies-and-never-loses-work"
    assert _slug("In `xpnet train`") == "in-xpnet-train"
    assert _slug("Train on the CPU, then on the GPU with one variable") == \
        "train-on-the-cpu-then-on-the-gpu-with-one-variable"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve_to_files_and_headings(page):
    links = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", prose(page))
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # https:, mailto:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and (target.suffix != ".md" or anchor not in _anchors(target)):
            broken.append(f"{link} (no such heading)")
    assert not broken, f"{page.name}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_files_the_docs_name_exist(page):
    """A path in backquotes (`tests/test_graphs.py`, `ci/matrix-cpu.md`, `examples/spiral.py`) is a
    file of this repository; a renamed or moved file leaves no stale name behind."""
    named = re.findall(r"`((?:xpnet|tests|ci|examples|docs)/[\w./*-]+\.\w+)`", page.read_text())
    missing = [name for name in named if not glob.glob(str(ROOT / name))]
    assert not missing, f"{page.name} names files that do not exist: {missing}"


# ------------------------------------------------------------------ "Use the model elsewhere"
def _snippet(marker: str) -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text(), re.S) if marker in b]
    assert len(blocks) == 1, f"expected one python snippet with {marker!r} in README + docs/, found {len(blocks)}"
    return blocks[0]


@pytest.fixture(scope="module")
def exported_digits(tmp_path_factory):
    """A folder where `xpnet train` and both `xpnet export` commands of docs/export.md have run."""
    pytest.importorskip("onnx", reason="onnx is not installed (pip install '.[export]')")
    pytest.importorskip("safetensors", reason="safetensors is not installed (pip install '.[export]')")
    cwd = tmp_path_factory.mktemp("docs-export")
    for argv in (["train", "--quiet", "--no-plot"],
                 ["export", "runs/digits/checkpoint.npz", "--format", "onnx"],
                 ["export", "runs/digits/checkpoint.npz", "--format", "safetensors"]):
        assert " ".join(["xpnet", *argv[:3]]) in text() or argv[0] == "train"
        done = run(xpnet(*argv), timeout=300, cwd=cwd)
        assert done.returncode == 0, done.stdout + done.stderr
    return cwd


def _classes_from_snippet(marker: str, cwd) -> np.ndarray:
    """Run the docs' snippet as written, in ``cwd``, and return the classes of its ``scores``."""
    script = cwd / f"snippet_{marker.replace('.', '_')}.py"
    script.write_text("import json\n" + _snippet(marker) + "\nprint(json.dumps(scores.argmax(1).tolist()))\n")
    done = run([sys.executable, str(script)], timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return np.array(json.loads(done.stdout.splitlines()[-1]))


def _predicted_classes(cwd, features) -> tuple[np.ndarray, str]:
    """`xpnet predict`'s classes for ``features`` (saved as a .npy file), and its stderr."""
    np.save(cwd / "features.npy", features)
    done = run(xpnet("predict", "runs/digits/checkpoint.npz", "features.npy"), timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return np.array([int(line.split("\t")[1]) for line in done.stdout.splitlines()]), done.stderr


@pytest.mark.parametrize("marker, needs", [("onnxruntime", "onnxruntime"), ("safetensors.torch", "torch")])
def test_export_snippets_run_as_written_on_raw_features(marker, needs, exported_digits):
    """`features` in the snippets are the raw test features: their classes are `xpnet predict`'s on
    the same raw features, and score the known ~98% (98.05% on this split)."""
    pytest.importorskip(needs, reason=f"{needs} is not installed")
    data = datasets.digits()
    classes = _classes_from_snippet(marker, exported_digits)
    predicted, _ = _predicted_classes(exported_digits, data.x_test_raw)
    assert classes.shape == data.t_test.shape
    assert np.mean(classes == data.t_test) >= 0.97
    assert (classes == predicted).mean() >= 0.995  # float32 graph vs model: a near tie may differ


def test_scaled_features_given_to_predict_get_a_note_and_raw_ones_none(exported_digits):
    data = datasets.digits()
    raw, err = _predicted_classes(exported_digits, data.x_test_raw)
    assert err == "" and np.mean(raw == data.t_test) >= 0.97
    scaled, err = _predicted_classes(exported_digits, data.x_test)
    assert "were scaled already" in err and "x_test_raw" in err
    assert np.mean(scaled == data.t_test) < 0.9  # scaled twice: why the note is there


def test_raw_features_are_the_bundled_values_and_the_scaler_inverts():
    data = datasets.digits()
    raw = data.x_test_raw
    assert raw.min() == 0 and raw.max() == 16 and np.array_equal(raw, np.round(raw))
    np.testing.assert_array_equal(data.scaler(raw), data.x_test)
    iris = datasets.iris()
    np.testing.assert_allclose(iris.scaler(iris.x_train_raw), iris.x_train, rtol=0, atol=1e-12)
    assert iris.x_train_raw.max() > 1  # centimetres, not [0, 1]


# ------------------------------------------------------------------ install lines and extras
def _extras() -> dict[str, set[str]]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python >= 3.11")
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {k: {re.match(r"[A-Za-z0-9_.-]+", req).group(0) for req in v} for k, v in table.items()}


def test_install_lines_name_extras_pyproject_has():
    extras, docs = _extras(), text()
    named = re.findall(r'pip install (?:-e )?"(?:\.|xpnet)\[([^\]]+)\]"', docs)
    named += re.findall(r'`"\.\[([^\]]+)\]"`', docs)  # the second extra of a table row
    assert named
    for group in named:
        for extra in group.split(","):
            assert extra in extras or extra == "NAME", f"the docs install the extra {extra!r}, which pyproject lacks"
    assert '"xpnet[' not in docs.replace('"xpnet[NAME]"', ""), "from a clone an extra installs as \".[NAME]\""


def test_docs_say_what_each_extra_holds_as_pyproject_does():
    extras, docs = _extras(), " ".join(text().split())
    cpu = docs.split('`pip install ".[cpu]"` installs')[1].split("The smaller extras")[0]
    assert set(re.findall(r"`([a-z0-9-]+)`", cpu)) == extras["cpu"]
    smaller = docs.split("The smaller extras:")[1].split("\n\n")[0]
    for name in ("progress", "plot", "export", "mpi", "test"):
        listed = re.search(rf"`{name}` \(([^)]*)\)", smaller)
        assert listed, f"the docs do not say what the {name} extra holds"
        assert set(re.findall(r"`([a-z0-9-]+)`", listed.group(1))) == extras[name], name
    # command 2 says its extras bring every other one but cupy's
    installed = extras["test"] | extras["cpu"] | extras["mpi"]
    for name, packages in extras.items():
        if not name.startswith("cuda"):
            assert packages <= installed, f"command 2 leaves out the {name} extra: {packages - installed}"
    # command 1 says a plain install has numpy only: nothing optional is a dependency
    deps = (ROOT / "pyproject.toml").read_text().split("dependencies = [")[1].split("]")[0]
    assert "matplotlib" not in deps and "tqdm" not in deps and "onnx" not in deps


# ------------------------------------------------------------------ numbers from ci/
def test_parity_matrix_numbers_are_those_of_ci_matrix_cpu():
    """docs/testing.md's last run and each of its rows, and the README's total, are ci/matrix-cpu.md's."""
    ci = (ROOT / "ci" / "matrix-cpu.md").read_text()
    page = (ROOT / "docs" / "testing.md").read_text()
    total = re.search(r"(\d+) passed, (\d+) failed, (\d+) skipped", ci).group(0)
    assert f"**{total}**" in page
    assert f"**{total}**" in " ".join(README.read_text().split())
    assert re.search(r"(\d+ min \d+ s) of tests", ci).group(1) in page
    totals = {row[0]: row[-1] for row in _table(ci, "| backend |")[1]}
    sums = np.array([[int(n) for n in cell.split("/")] for cell in totals.values()]).sum(0)
    assert total == "{} passed, {} failed, {} skipped".format(*sums)
    checked = 0
    for label, cell in _table(page, "| backend row |")[1]:
        if label == "cupy":
            assert "not run" in cell and not any(r.startswith("cupy") for r in totals)
            continue
        if label.startswith("tests that take no backend row"):
            names = ["(any)"]
        else:
            backend, dtypes = label.split(" ", 1)
            names = [f"{backend}-{dtype}" for dtype in re.findall(r"float\d+", dtypes)]
        assert names, label
        for name in names:
            assert totals.get(name) == cell.split()[0], f"{label}: {name} is {totals.get(name)} in ci/matrix-cpu.md"
            checked += 1
    assert checked == len(totals), "docs/testing.md leaves out rows of ci/matrix-cpu.md"


def _number(cell: str) -> tuple[float, int]:
    """A table cell's number (`0.188`, `0.66x`) and its decimals."""
    digits = re.match(r"[\d,]*\.?(\d*)", cell.replace(",", ""))
    return float(cell.rstrip("x").replace(",", "")), len(digits.group(1))


def _tables(markdown: str, header_start: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table whose header line starts with ``header_start``, as :func:`_table` gives one."""
    lines = markdown.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header_start)]
    return [_table("\n".join(lines[i:]), header_start) for i in starts]


def test_speed_table_numbers_are_those_of_ci_bench_cpu():
    """Each row of docs/speed.md's tables is ci/bench-cpu.md's row for the same workload and
    contender (in a table with that column), rounded to the decimals shown."""
    pages = [_tables((ROOT / name).read_text(), "| workload | contender |")
             for name in ("docs/speed.md", "ci/bench-cpu.md")]
    ci_rows = [(ci_head, r) for ci_head, rows in pages[1] for r in rows if len(r) == len(ci_head)]
    assert sum(len(rows) for _, rows in pages[0]) >= 10
    for head, rows in pages[0]:
        for row in rows:
            workload, contender = row[0], row[1]
            match = [(h, r) for h, r in ci_rows
                     if r[0] == workload and (r[1] == contender or r[1].startswith(contender + " ("))]
            assert len(match) == 1, f"{workload} {contender}: not one row in ci/bench-cpu.md"
            ci_head, ci_row = match[0]
            assert set(head) <= set(ci_head), f"ci/bench-cpu.md has no column {sorted(set(head) - set(ci_head))}"
            for column, cell in zip(head[2:], row[2:]):
                value, decimals = _number(cell)
                expected, _ = _number(ci_row[ci_head.index(column)])
                assert abs(value - expected) <= 0.5 * 10 ** -decimals + 1e-9, \
                    f"{workload} {contender} {column}: docs/speed.md {cell}, ci/bench-cpu.md {expected}"
