"""Keep notebooks clean for git: no outputs (except the ones nbval checks), no execution counts, no stray metadata.

    python scripts/clean_notebooks.py notebooks/*.ipynb            # strip
    python scripts/clean_notebooks.py --execute notebooks/00_setup.ipynb
        # run it first (with your AUDIOLDM2_* settings, e.g. AUDIOLDM2_MODEL=tiny AUDIOLDM2_SMOKE=1),
        # and keep the outputs of the cells marked "# NBVAL_CHECK_OUTPUT" for nbval to compare
"""

import argparse
import os
from pathlib import Path

import nbformat

CHECK_MARK = "NBVAL_CHECK_OUTPUT"
KEPT_METADATA = {"kernelspec", "language_info"}


def clean(notebook) -> None:
    notebook.metadata = {k: v for k, v in notebook.metadata.items() if k in KEPT_METADATA}
    notebook.metadata["language_info"] = {"name": "python"}
    for cell in notebook.cells:
        cell.pop("id", None)
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
    notebook.nbformat_minor = 4


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
        clean(notebook)
        nbformat.write(notebook, path)
        print(f"cleaned {path}")


if __name__ == "__main__":
    main()
