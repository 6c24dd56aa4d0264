"""Keep notebooks clean for git: no outputs (except the ones nbval checks), no execution counts, no stray metadata.

    python scripts/clean_notebooks.py notebooks/*.ipynb            # strip
    python scripts/clean_notebooks.py --execute notebooks/00_setup.ipynb
        # run it first (with your AUDIOLDM2_* settings, e.g. AUDIOLDM2_MODEL=tiny AUDIOLDM2_SMOKE=1),
        # and keep the outputs of the cells marked "# NBVAL_CHECK_OUTPUT" for nbval to compare
"""

import argparse
import hashlib
import os
from pathlib import Path

import nbformat

CHECK_MARK = "NBVAL_CHECK_OUTPUT"
KEPT_METADATA = {"kernelspec", "language_info"}


def stable_id(notebook_name: str, index: int, source: str) -> str:
    """An id for a cell that has none: made once from where it is and what it says, then kept as it is."""
    return hashlib.sha1(f"{notebook_name}:{index}:{source}".encode()).hexdigest()[:12]


def clean(notebook, name: str = "") -> None:
    """Strip ``notebook`` in place; ``name`` (its file name) seeds the ids of cells that have none.

    nbformat 4.5 with an id on every cell: JupyterLab and VS Code add ids to an older notebook when they open it,
    and then show it as modified before any edit. Ids already there are kept, so a cell keeps its id for good.
    """
    notebook.metadata = {k: v for k, v in notebook.metadata.items() if k in KEPT_METADATA}
    notebook.metadata["language_info"] = {"name": "python"}
    # What JupyterLab writes when ipykernel's kernel starts: with anything else, Lab rewrites it and shows the
    # notebook modified. (Lab also fills language_info in with the kernel's Python version, which no committed
    # value can match on every reader's machine.)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    seen = set()
    for index, cell in enumerate(notebook.cells):
        if not cell.get("id") or cell["id"] in seen:
            cell["id"] = stable_id(name, index, cell.source)
        seen.add(cell["id"])
        cell.metadata = {}
        if cell.cell_type != "code":
            continue
        checked = CHECK_MARK in cell.source
        # nbval compares a cell's outputs only if the cell counts as run: checked cells keep a count of 1.
        cell.execution_count = 1 if checked and cell.outputs else None
        if not checked:
            cell.outputs = []
        for output in cell.outputs:
            output.pop("execution_count", None)
            output.metadata = {} if "metadata" in output else output.get("metadata")
            if output.get("metadata") is None:
                output.pop("metadata", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--execute", action="store_true", help="run each notebook first, keeping checked outputs")
    args = parser.parse_args()
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        if args.execute:
            from nbclient import NotebookClient

            os.environ.setdefault("MPLBACKEND", "Agg")
            NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        clean(notebook, path.name)
        nbformat.write(notebook, path)
        print(f"cleaned {path}")


if __name__ == "__main__":
    main()
