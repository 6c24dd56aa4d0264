"""The project's promises about itself: one set of pins, clean notebooks, one repository address."""

import json
import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml  # pyyaml, from the test extra

from helpers import settings

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~ \[]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_installs_what_pyproject_pins():
    project = PYPROJECT["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["torch"]) | set(
        project["optional-dependencies"]["test"])
    wanted = {r for r in wanted if not (_name(r) == "torch" and "==" not in r)}  # the pin replaces the range
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip_section = next(item["pip"] for item in conda if isinstance(item, dict))
    listed = {r for r in pip_section if not r.startswith("-e") and _name(r) != "jupyterlab"}
    assert listed == wanted


def test_the_libraries_the_lessons_are_about_are_pinned_exactly_and_the_readme_names_the_pins():
    project = PYPROJECT["project"]
    pins = {_name(r): r for r in project["dependencies"] + project["optional-dependencies"]["torch"]}
    readme = (ROOT / "README.md").read_text()
    for name in ("torch", "diffusers", "transformers", "accelerate"):
        assert "==" in pins[name], f"{name} is not pinned: {pins[name]}"
        assert pins[name].replace("==", " ") in readme, f"README's Versions section does not say {pins[name]}"


def test_repository_address_is_kept_in_one_place():
    assert PYPROJECT["project"]["urls"]["Repository"] == settings.REPOSITORY_URL
    assert settings.REPOSITORY_URL in (ROOT / "README.md").read_text()


def test_notebooks_are_numbered_from_00_without_gaps():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    assert NOTEBOOKS[0].name == "00_setup.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_in_colab_and_installs_from_the_repository(path):
    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0].source
    assert f"{settings.COLAB_URL}/notebooks/{path.name}" in first, "Colab badge"
    assert "What you will learn" in first and "What you need" in first
    assert settings.INSTALL_SPEC in notebook.cells[1].source, "Colab install cell"
    text = "\n".join(cell.source for cell in notebook.cells)
    assert "## Recap" in text and "## Exercises" in text
    assert "AUDIOLDM2_MODEL" in text or "load_pipeline" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    raw = json.loads(path.read_text())
    assert set(raw["metadata"]) <= {"kernelspec", "language_info"}
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
