"""The project's promises about itself: one set of pins, clean notebooks, one repository address."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml  # pyyaml, from the test extra

from helpers import repository

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~ \[]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_installs_what_pyproject_pins():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    wanted = set(project["dependencies"]) | set(extras["torch"]) | set(extras["test"]) | set(extras["lab"])
    wanted = {r for r in wanted if not (_name(r) == "torch" and "==" not in r)}  # the pin replaces the range
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip_section = next(item["pip"] for item in conda if isinstance(item, dict))
    listed = {r for r in pip_section if not r.startswith("-e")}
    assert listed == wanted


def test_the_libraries_the_lessons_are_about_are_pinned_exactly_and_the_readme_names_the_pins():
    project = PYPROJECT["project"]
    pins = {_name(r): r for r in project["dependencies"] + project["optional-dependencies"]["torch"]}
    readme = (ROOT / "README.md").read_text()
    for name in ("torch", "diffusers", "transformers", "accelerate"):
        assert "==" in pins[name], f"{name} is not pinned: {pins[name]}"
        assert pins[name].replace("==", " ") in readme, f"README's Versions section does not say {pins[name]}"


def test_every_badge_install_cell_pyproject_and_readme_name_the_repository_in_settings():
    assert repository.disagreements(ROOT) == []


def test_building_the_course_prints_no_packaging_warning(tmp_path):
    # setuptools warned that `project.license` as a table is deprecated; a reader's install should be quiet.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--verbose", "--wheel-dir", tmp_path,
                           ROOT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DeprecationWarning" not in done.stdout + done.stderr
    assert len(list(tmp_path.glob("audioldm2_faster-*.whl"))) == 1


def test_notebooks_are_numbered_from_00_without_gaps():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    assert NOTEBOOKS[0].name == "00_setup.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_in_colab_and_installs_from_the_repository(path):
    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0].source
    assert repository.colab_badge_url(path.name) in first, "Colab badge"
    assert "What you will learn" in first and "What you need" in first
    assert notebook.cells[1].source == repository.install_cell(), "Colab install cell"
    text = "\n".join(cell.source for cell in notebook.cells)
    assert "## Recap" in text and "## Exercises" in text
    assert "AUDIOLDM2_MODEL" in text or "load_pipeline" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    raw = json.loads(path.read_text())
    assert set(raw["metadata"]) <= {"kernelspec", "language_info"}
    # nbformat 4.5, an id on every cell: otherwise JupyterLab adds ids on opening and shows the notebook modified.
    assert (raw["nbformat"], raw["nbformat_minor"]) == (4, 5)
    ids = [cell.get("id") for cell in raw["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), "every cell has an id of its own"
    for index, cell in enumerate(raw["cells"]):
        if cell["cell_type"] != "code":
            continue
        checked = "NBVAL_CHECK_OUTPUT" in "".join(cell["source"])
        assert checked or not cell["outputs"], f"cell {index} keeps outputs nbval does not check"
        assert checked or cell["execution_count"] is None, f"cell {index} keeps an execution count"
        assert not cell.get("metadata"), f"cell {index} keeps metadata"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test.sh" in ci and "bash scripts/test.sh" in readme
    assert "bash scripts/course.sh" in readme


def test_cleaning_a_clean_notebook_changes_nothing_and_keeps_every_cell_id(tmp_path):
    source = ROOT / "notebooks" / "03_sdpa.ipynb"
    copy = tmp_path / source.name
    copy.write_text(source.read_text())
    subprocess.run([sys.executable, ROOT / "scripts" / "clean_notebooks.py", copy], check=True, capture_output=True)
    assert copy.read_text() == source.read_text()


def test_the_install_cell_is_five_lines_at_most_and_says_it_may_restart_the_runtime():
    cell = repository.install_cell()
    assert len(cell.splitlines()) <= 5
    assert "%pip install" in cell and "colab_install.finish()" in cell and "restarts once" in cell


def test_every_helpers_package_is_installed_by_a_plain_install():
    """Colab installs the course without -e: a folder of helpers that pyproject does not list would be missing."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "helpers").rglob("*")
               if path.suffix in (".py", ".json") and "__pycache__" not in path.parts}
    assert folders <= listed, f"add {sorted(folders - listed)} to [tool.setuptools] packages"
