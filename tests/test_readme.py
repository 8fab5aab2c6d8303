"""The README's code runs as written and its promises match the code."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from procs import run, xpnet

from xpnet import datasets

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


# ------------------------------------------------------------------ "Use the model elsewhere"
def _snippet(marker: str) -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if marker in b]
    assert len(blocks) == 1, f"expected one README python snippet with {marker!r}, found {len(blocks)}"
    return blocks[0]


@pytest.fixture(scope="module")
def exported_digits(tmp_path_factory):
    """A folder where `xpnet train` and both `xpnet export` commands of the README have run."""
    pytest.importorskip("onnx", reason="onnx is not installed (pip install '.[export]')")
    pytest.importorskip("safetensors", reason="safetensors is not installed (pip install '.[export]')")
    cwd = tmp_path_factory.mktemp("readme-export")
    for argv in (["train", "--quiet", "--no-plot"],
                 ["export", "runs/digits/checkpoint.npz", "--format", "onnx"],
                 ["export", "runs/digits/checkpoint.npz", "--format", "safetensors"]):
        done = run(xpnet(*argv), timeout=300, cwd=cwd)
        assert done.returncode == 0, done.stdout + done.stderr
    return cwd


def _classes_from_snippet(marker: str, cwd) -> np.ndarray:
    """Run the README's snippet as written, in ``cwd``, and return the classes of its ``scores``."""
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
def test_readme_export_snippets_run_as_written_on_raw_features(marker, needs, exported_digits):
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
    table = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {k: {re.match(r"[A-Za-z0-9_.-]+", req).group(0) for req in v} for k, v in table.items()}


def test_readme_install_lines_name_extras_pyproject_has():
    extras, text = _extras(), README.read_text()
    named = re.findall(r'pip install (?:-e )?"(?:\.|xpnet)\[([^\]]+)\]"', text)
    named += re.findall(r'`"\.\[([^\]]+)\]"`', text)  # the second extra of a table row
    assert named
    for group in named:
        for extra in group.split(","):
            assert extra in extras or extra == "NAME", f"README installs the extra {extra!r}, which pyproject lacks"
    assert '"xpnet[' not in text.replace('"xpnet[NAME]"', ""), "from a clone an extra installs as \".[NAME]\""


def test_readme_says_what_each_extra_holds_as_pyproject_does():
    extras, text = _extras(), " ".join(README.read_text().split())
    cpu = text.split('`pip install ".[cpu]"` installs')[1].split("The smaller extras")[0]
    assert set(re.findall(r"`([a-z0-9-]+)`", cpu)) == extras["cpu"]
    smaller = text.split("The smaller extras:")[1].split("\n\n")[0]
    for name in ("progress", "plot", "export", "mpi", "test"):
        listed = re.search(rf"`{name}` \(([^)]*)\)", smaller)
        assert listed, f"README does not say what the {name} extra holds"
        assert set(re.findall(r"`([a-z0-9-]+)`", listed.group(1))) == extras[name], name
    # command 2 says its extras bring every other one but cupy's
    installed = extras["test"] | extras["cpu"] | extras["mpi"]
    for name, packages in extras.items():
        if not name.startswith("cuda"):
            assert packages <= installed, f"command 2 leaves out the {name} extra: {packages - installed}"
    # command 1 says a plain install has numpy only: nothing optional is a dependency
    deps = (README.parent / "pyproject.toml").read_text().split("dependencies = [")[1].split("]")[0]
    assert "matplotlib" not in deps and "tqdm" not in deps and "onnx" not in deps
