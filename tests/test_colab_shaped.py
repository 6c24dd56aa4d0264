"""The install cell in a runtime shaped like Colab's, before the course arrives (about 3 minutes).

A fresh virtual environment holds what a Colab runtime holds: its own torch (here the 2.13.0 CPU wheel on this
machine's disk: another torch would download gigabytes), ipywidgets 7.7.1, a transformers 4.x and a diffusers
0.3x, already imported when the install cell runs; `google.colab` is a stand-in module. The install cell is
each notebook's own, pointed at this checkout instead of GitHub.
"""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers import repository

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "colab"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# What the runtime brings (Colab's own versions differ; these are its kind: older diffusers and transformers).
RUNTIME = ["torch==2.13.0", "ipywidgets==7.7.1", "transformers==4.57.6", "diffusers==0.35.2", "accelerate",
           "numpy", "pandas", "matplotlib", "librosa", "soundfile", "psutil", "sentencepiece", "protobuf",
           "ipykernel", "nbclient", "nbformat", "packaging"]
STAND_IN_COLAB = "import google.colab  # the stand-in: how the install cell knows it is on Colab\n"

pytestmark = pytest.mark.slow(reason="builds a Colab-shaped virtual environment (pip installs torch, "
                                     "transformers 4 and diffusers 0.35 into it), installs the course there and "
                                     "runs notebook 00 in it: minutes")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """A Colab-like virtual environment, before the course is installed; its folder."""
    folder = tmp_path_factory.mktemp("colab") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run([folder / "bin" / "python", "-m", "pip", "install", "--quiet", *RUNTIME], check=True)
    return folder


def _versions(runtime, *names):
    code = f"import importlib.metadata as m; print({{n: m.version(n) for n in {list(names)!r}}})"
    out = subprocess.run([runtime / "bin" / "python", "-c", code], capture_output=True, text=True, check=True)
    return eval(out.stdout)  # a dict literal printed by the line above


def _run(runtime, cells, tmp_path, name, **environment):
    """Execute ``cells`` as a notebook in a kernel of ``runtime``; (outcome, the executed notebook)."""
    path = tmp_path / name
    notebook = cells if isinstance(cells, nbformat.NotebookNode) else new_notebook(
        cells=[new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(environment)
    done = subprocess.run([runtime / "bin" / "python", HERE / "run_notebook.py", path, tmp_path],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1], nbformat.read(path, as_version=4)


def _text(cell):
    return "".join(output.get("text", "") for output in cell.outputs)


def _said(cell):
    """What the install cell said, without the note IPython's %pip prints after every install."""
    return "".join(line for line in _text(cell).splitlines(keepends=True)
                   if not line.startswith("Note: you may need to restart the kernel"))


def _install_cell(notebook_path):
    """The notebook's install cell, with the course fetched from this checkout instead of GitHub."""
    source = nbformat.read(notebook_path, as_version=4).cells[1].source
    assert repository.install_spec() in source
    return source.replace(repository.install_spec(), f"audioldm2-faster @ {ROOT.as_uri()}")


def test_the_install_cell_installs_the_pins_keeps_torch_and_ipywidgets_and_restarts_once(runtime, tmp_path,
                                                                                         tiny_checkpoint):
    before = _versions(runtime, "torch", "ipywidgets", "diffusers", "transformers")
    stand_in = {"PYTHONPATH": str(HERE / "stand_in")}

    # First run: diffusers and transformers were imported in their old versions, so the runtime restarts.
    outcome, ran = _run(runtime, [
        STAND_IN_COLAB + "import sys\nimport diffusers, transformers\n"
        "print(sys.prefix, diffusers.__version__, transformers.__version__)",
        _install_cell(NOTEBOOKS[0]),
        "print('the next cell ran')",
    ], tmp_path, "first.ipynb", **stand_in)
    assert _text(ran.cells[0]).split() == [str(runtime), "0.35.2", "4.57.6"]  # the runtime's kernel, old versions
    assert outcome == "kernel died"  # the restart: "Run all" stops at the install cell
    assert _text(ran.cells[2]) == ""

    after = _versions(runtime, "torch", "ipywidgets", "diffusers", "transformers")
    assert after["torch"] == before["torch"] == "2.13.0+cpu"
    assert after["ipywidgets"] == "7.7.1"
    assert (after["diffusers"], after["transformers"]) == (importlib.metadata.version("diffusers"),
                                                          importlib.metadata.version("transformers"))

    # Then every notebook's install cell, after the restart: nothing to do, and it says so.
    outcome, ran = _run(runtime, [STAND_IN_COLAB] + [_install_cell(path) for path in NOTEBOOKS],
                        tmp_path, "again.ipynb", **stand_in)
    assert outcome == "finished"
    for path, cell in zip(NOTEBOOKS, ran.cells[1:]):
        assert _said(cell).startswith("The course is installed (diffusers 0.42.1"), path.name
        assert _said(cell).rstrip().endswith("nothing to do."), path.name

    # And the first notebook runs to its end there (not on Colab now: its install cell does nothing).
    setup = nbformat.read(NOTEBOOKS[0], as_version=4)
    outcome, ran = _run(runtime, setup, tmp_path, NOTEBOOKS[0].name, AUDIOLDM2_MODEL=str(tiny_checkpoint),
                        AUDIOLDM2_SMOKE="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
                        AUDIOLDM2_RESULTS=str(tmp_path / "results.jsonl"))
    assert outcome == "finished"
    saved = json.dumps([cell.get("outputs", []) for cell in ran.cells])
    assert "<audio" in saved  # the players are plain HTML, kept in the saved notebook
    assert _versions(runtime, "torch")["torch"] == "2.13.0+cpu"
