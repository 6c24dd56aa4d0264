"""Copy the helpers' code into the notebooks' ``#@save`` cells, so that the two are one again.

    python scripts/sync_taught_cells.py                       # every notebook
    python scripts/sync_taught_cells.py notebooks/01_baseline.ipynb --check   # say what differs, change nothing

A function a lesson is about is defined in a runnable cell of the notebook that teaches it, whose first line is
``#@save helpers/<module>.py``; the package keeps the same code for later notebooks, and
tests/test_course_shape.py fails when the two differ. After changing such a function in ``helpers/``, run this
script: each def and class of each ``#@save`` cell is replaced by the module's own (the cell's imports stay as
written). To go the other way, copy the cell into the module by hand: the module is the one the tests import.
"""

import argparse
import ast
import importlib
import inspect
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SAVE_MARK = re.compile(r"#@save (helpers/\w+\.py)\n")


def synced(source: str) -> str:
    """``source`` (a ``#@save`` cell) with each top-level def and class replaced by its module's code."""
    module = importlib.import_module(SAVE_MARK.match(source).group(1).removesuffix(".py").replace("/", "."))
    lines = source.splitlines()
    for node in reversed(ast.parse(source).body):  # from the end, so that earlier line numbers stay right
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and hasattr(module, node.name):
            first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            kept = inspect.getsource(getattr(module, node.name)).rstrip("\n").splitlines()
            lines[first - 1:node.end_lineno] = kept
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--check", action="store_true", help="only list the cells that differ; exit 1 if any")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    differ = 0
    for path in args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        changed = False
        for cell in notebook.cells:
            if cell.cell_type == "code" and SAVE_MARK.match(cell.source):
                new = synced(cell.source)
                if new != cell.source:
                    differ += 1
                    print(f"{path.name}: {cell.source.splitlines()[0]} (cell {cell.get('id')}) differs from the helpers")
                    cell.source, changed = new, True
        if changed and not args.check:
            nbformat.write(notebook, path)
            print(f"{path.name}: updated")
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
