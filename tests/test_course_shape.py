"""The course reads as one course: one generate and one measure, shown once, each lesson's call in plain sight.

These tests read the notebooks as files (nbval runs them): they protect the d2l rule that a function is written
out once, in the notebook that teaches it, and called qualified (``h.generate``) everywhere after.
"""

import ast
import inspect
import re
from pathlib import Path

import nbformat
import pytest

import helpers as h

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = {path.name[:2]: path for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))}


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def _code(path: Path) -> str:
    return "\n".join(cell.source for cell in _code_cells(path))


def _checked_output(path: Path) -> str:
    """The text the notebook's committed, nbval-checked cells printed."""
    return "".join(output.get("text", "") for cell in _code_cells(path) for output in cell.outputs)


def _defined_functions(path: Path) -> set[str]:
    names = set()
    for cell in _code_cells(path):
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        names |= {node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}
    return names


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_no_notebook_writes_its_own_generate_or_measure(number):
    assert not _defined_functions(NOTEBOOKS[number]) & {"generate", "measure", "setup", "load_pipeline"}


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_notebooks_call_the_helpers_qualified_and_never_a_private_name(number):
    code = _code(NOTEBOOKS[number])
    assert "import helpers as h" in code
    assert not re.search(r"^\s*from helpers", code, flags=re.M), "import helpers as h, then h.name"
    assert not re.search(r"\bh\.(\w+\.)*_\w", code), "a private name of the helpers"


@pytest.mark.parametrize("number", ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"])
def test_every_lesson_after_00_starts_with_the_one_setup_call(number):
    assert "h.setup(" in _code(NOTEBOOKS[number])


@pytest.mark.parametrize("function, number", [
    (h.setup, "00"), (h.load_pipeline, "00"),
    (h.generate, "01"), (h.time_once, "01"), (h.time_runs, "01"), (h.measure, "01"),
    (h.peak_memory, "07"), (h.flops.stage_flops, "09"),
])  # notebook 10 writes fuse_qkv and encode_prompts out in #@save cells (tests/test_beyond.py checks them)
def test_each_helper_is_shown_where_it_is_taught_and_the_copy_shown_is_the_code(function, number):
    """The committed output (what GitHub and Colab show before a run) is the helper's source as it is now."""
    source = inspect.getsource(function)
    assert source in _checked_output(NOTEBOOKS[number]), (
        f"notebooks/{NOTEBOOKS[number].name} shows an old copy of {function.__name__}: run "
        "scripts/clean_notebooks.py --execute on it (AUDIOLDM2_MODEL=tiny AUDIOLDM2_SMOKE=1)")
    assert [n for n, path in NOTEBOOKS.items() if source in _checked_output(path)] == [number]  # shown once


@pytest.mark.parametrize("number, calls", [
    ("03", [r"pipe\.unet\.set_attn_processor\(AttnProcessor2_0\(\)\)"]),
    ("04", [r"AudioLDM2Pipeline\.from_pretrained\([^)]*torch_dtype=torch\.float16"]),
    ("05", [r"torch\.compile\(pipe\.unet, mode=\"reduce-overhead\", fullgraph=True\)"]),
    ("06", [r"DPMSolverMultistepScheduler\.from_config\(pipe\.scheduler\.config\)"]),
    ("07", [r"torch\.cuda\.reset_peak_memory_stats\(\)", r"torch\.cuda\.max_memory_allocated\(\)",
            r"pipe\.enable_model_cpu_offload\(\)"]),
])
def test_each_lesson_writes_out_the_call_it_teaches(number, calls):
    code = _code(NOTEBOOKS[number])
    for call in calls:
        assert re.search(call, code), f"{NOTEBOOKS[number].name} does not show {call}"


def test_every_name_the_package_exports_is_used_by_a_notebook():
    code = "\n".join(_code(path) for path in NOTEBOOKS.values())
    unused = [name for name in h.__all__ if f"h.{name}" not in code and f"#@save helpers/{name}.py" not in code]
    assert unused == [], f"exported but used by no notebook: {unused}"
