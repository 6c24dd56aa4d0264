"""The course reads as one course: one generate and one measure, taught once, each lesson's call in plain sight.

These tests read the notebooks as files (nbval runs them). They protect d2l's rule: a function a lesson is about is
defined in a runnable ``#@save helpers/<module>.py`` cell of the notebook that teaches it, exactly as the package
keeps it, and every later notebook calls the package's copy, qualified (``h.generate``).
"""

import ast
import importlib
import inspect
import re
from pathlib import Path

import nbformat
import pytest

import helpers as h

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = {path.name[:2]: path for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))}
SAVE_MARK = re.compile(r"#@save (helpers/\w+\.py)\n")

# The functions the lessons are about, each defined in a `#@save` cell of the notebook that teaches it:
# (module, name) -> that notebook.
TAUGHT = {
    ("helpers.loading", "load_pipeline"): "00", ("helpers.session", "setup"): "00",
    ("helpers.generating", "generate"): "01", ("helpers.timing", "time_once"): "01",
    ("helpers.timing", "time_runs"): "01", ("helpers.measuring", "measure"): "01",
    ("helpers.memory", "peak_memory"): "07",
    ("helpers.flops", "stage_flops"): "09", ("helpers.stages", "profile_stages"): "09",
    ("helpers.fusing", "fuse_qkv"): "10", ("helpers.prompts", "encode_prompts"): "10",
    ("helpers.deep_cache", "apply_deep_cache"): "10", ("helpers.deep_cache", "DeepCacheStep"): "10",
    ("helpers.deep_cache", "track_timestep"): "10",
}


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def _code(path: Path) -> str:
    return "\n".join(cell.source for cell in _code_cells(path))


def _without_magics(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def _saved_cells(path: Path) -> list[tuple[str, str]]:
    """(module, source) of each `#@save helpers/<module>.py` cell, e.g. ``("helpers.timing", "#@save ...")``."""
    cells = []
    for cell in _code_cells(path):
        if match := SAVE_MARK.match(cell.source):
            cells.append((match.group(1).removesuffix(".py").replace("/", "."), cell.source))
    return cells


def _definitions(source: str) -> dict[str, str]:
    """Each top-level def and class of ``source``, by name, as written (its decorators included)."""
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            found[node.name] = "\n".join(lines[first - 1:node.end_lineno])
    return found


def _taught_where(module_name: str, name: str) -> list[str]:
    return [number for number, path in NOTEBOOKS.items() for module, source in _saved_cells(path)
            if module == module_name and name in _definitions(source)]


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_no_notebook_writes_its_own_generate_or_measure(number):
    """A taught function is defined in its `#@save` cell only; no other cell writes its own."""
    taught = {"generate", "measure", "setup", "load_pipeline"} | {name for _, name in TAUGHT}
    defined = set()
    for cell in _code_cells(NOTEBOOKS[number]):
        if not SAVE_MARK.match(cell.source):
            tree = ast.parse(_without_magics(cell.source))
            defined |= {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert not defined & taught


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_notebooks_call_the_helpers_qualified_and_never_a_private_name(number):
    cells = _code_cells(NOTEBOOKS[number])
    code = "\n".join(cell.source for cell in cells if not SAVE_MARK.match(cell.source))
    assert "import helpers as h" in code
    assert not re.search(r"^\s*from helpers", code, flags=re.M), "import helpers as h, then h.name"
    assert not re.search(r"\bh\.(\w+\.)*_\w", code), "a private name of the helpers"
    for _, source in _saved_cells(NOTEBOOKS[number]):  # a taught cell imports what it needs, by public names
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers"):
                assert not [alias.name for alias in node.names if alias.name.startswith("_")], source[:80]


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_every_saved_cell_is_imports_then_the_helpers_own_definitions(number):
    """`#@save helpers/<module>.py`, its imports, then def/class blocks, each exactly the module's code."""
    for module_name, source in _saved_cells(NOTEBOOKS[number]):
        module = importlib.import_module(module_name)
        body = ast.parse(source).body
        allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        assert all(isinstance(node, allowed) for node in body), f"{module_name}: imports and definitions only"
        definitions = _definitions(source)
        assert definitions, f"a #@save {module_name} cell defines nothing"
        for name, written in definitions.items():
            assert hasattr(module, name), f"{NOTEBOOKS[number].name} defines {name}, which {module_name} lacks"
            kept = inspect.getsource(getattr(module, name)).rstrip("\n")
            assert written == kept, (
                f"{NOTEBOOKS[number].name}'s {name} differs from {module_name}.{name}: make them one again "
                "(python scripts/sync_taught_cells.py copies the helpers' code into the #@save cells)")


@pytest.mark.parametrize("module_name, name", sorted(TAUGHT))
def test_each_taught_function_is_defined_once_in_the_notebook_that_teaches_it(module_name, name):
    assert _taught_where(module_name, name) == [TAUGHT[module_name, name]]


def test_no_definition_is_taught_twice():
    seen = {}
    for number, path in NOTEBOOKS.items():
        for module_name, source in _saved_cells(path):
            for name in _definitions(source):
                assert (module_name, name) not in seen, f"{module_name}.{name}: {seen[module_name, name]} and {number}"
                seen[module_name, name] = number


@pytest.mark.parametrize("number", ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"])
def test_every_lesson_after_00_starts_with_the_one_setup_call(number):
    assert "h.setup(" in _code(NOTEBOOKS[number])


@pytest.mark.parametrize("number, calls", [
    ("03", [r"pipe\.unet\.set_attn_processor\(AttnProcessor2_0\(\)\)"]),
    ("04", [r"AudioLDM2Pipeline\.from_pretrained\([^)]*\bdtype=torch\.float16",
            r"torch\.autocast\(device\.type, dtype=torch\.bfloat16\)"]),
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


def test_00_draws_the_pipeline_and_09_draws_its_measured_shares_on_it():
    assert re.search(r"h\.diagram\.plot_pipeline\(", _code(NOTEBOOKS["00"]))
    assert re.search(r"h\.diagram\.plot_pipeline\(last\.stages", _code(NOTEBOOKS["09"]))
    for number in ("06", "08"):  # they point back to the picture
        assert "plot_pipeline" in _code(NOTEBOOKS[number])


def _free_names(source: str) -> set[str]:
    """Names the definitions of ``source`` read but neither define, import, nor get as arguments."""
    import builtins

    tree = ast.parse(source)
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return read - bound


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_every_saved_cell_imports_what_it_uses(number):
    """A `#@save` cell runs on its own imports, and the functions earlier `#@save` cells of its notebook define
    (as notebook 01's measure calls its generate): nothing it needs is left to an unrelated cell above it."""
    defined_earlier = set()
    for module_name, source in _saved_cells(NOTEBOOKS[number]):
        missing = _free_names(source) - defined_earlier
        assert not missing, f"{NOTEBOOKS[number].name}, #@save {module_name}: {sorted(missing)} come from nowhere"
        defined_earlier |= set(_definitions(source))
