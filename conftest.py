"""Test set-up: every test and every notebook runs offline on a tiny random checkpoint.

The checkpoint is built once per session, before nbval starts its kernels, so that the kernels
inherit ``AUDIOLDM2_MODEL`` pointing at it (``pytest_sessionstart`` runs before any collector).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="audioldm2-tests-"))
TINY_CHECKPOINT = _SESSION_DIR / "tiny-audioldm2"
# Set for the tests, not for the course runner's kernels: the runner is tested as a reader starts it.
_TEST_ONLY_VARIABLES = ("MPLBACKEND", "TQDM_DISABLE", "AUDIOLDM2_TESTS_HALF_ON_CPU", "AUDIOLDM2_RESULTS")
ARTEFACTS = {}  # what a test kept for a person to look at (e.g. the browser's screenshots): name -> folder


def pytest_sessionstart(session):
    from helpers.checkpoints import write_tiny_checkpoint

    write_tiny_checkpoint(TINY_CHECKPOINT)
    os.environ.update({
        "AUDIOLDM2_MODEL": str(TINY_CHECKPOINT),
        "AUDIOLDM2_RESULTS": str(_SESSION_DIR / "results.jsonl"),
        # Notebooks run in smoke mode here: capped steps and lengths keep the suite within minutes.
        "AUDIOLDM2_SMOKE": os.environ.get("AUDIOLDM2_SMOKE", "1"),
        # CI has no GPU: let the notebooks' float16 and bfloat16 code run on the CPU (a reader's CPU refuses it).
        "AUDIOLDM2_TESTS_HALF_ON_CPU": "1",
        "HF_HUB_OFFLINE": "1",
        # nbval's kernels: no pictures to compare, so none drawn (the course runner gives its kernels the inline
        # backend itself, so its notebooks keep their plots), and no progress bars in the outputs.
        "MPLBACKEND": "Agg",
        "TQDM_DISABLE": "1",
    })


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    for name, folder in ARTEFACTS.items():
        terminalreporter.write_line(f"{name}: {folder}")


@pytest.fixture(scope="session")
def artefacts() -> dict:
    """Name -> folder of what a test keeps for a person to look at; listed at the end of the run. (A fixture, not
    ``import conftest``: with tests/faults/conftest.py beside it, that name can mean another file.)"""
    return ARTEFACTS


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    return TINY_CHECKPOINT


@pytest.fixture(scope="session")
def tiny_pipe(tiny_checkpoint):
    from helpers.loading import load_pipeline

    return load_pipeline(tiny_checkpoint, device="cpu")


class CourseRun(NamedTuple):
    folder: Path  # the run folder: executed notebooks, results.jsonl, summary.md, ladder.png
    done: subprocess.CompletedProcess  # the runner's exit code and its lines
    jupyter_data: Path  # JUPYTER_DATA_DIR of the run: the secret its notebooks are signed with


@pytest.fixture(scope="session")
def course_run(tiny_checkpoint, tmp_path_factory) -> CourseRun:
    """The whole course run once, as ``AUDIOLDM2_MODEL=tiny AUDIOLDM2_SMOKE=1 bash scripts/course.sh`` runs it.

    A few minutes; shared by the tests that read the executed notebooks and the browser test that opens them.
    """
    folder = tmp_path_factory.mktemp("course")
    env = {name: value for name, value in os.environ.items() if name not in _TEST_ONLY_VARIABLES}
    env.update(AUDIOLDM2_MODEL=str(tiny_checkpoint), AUDIOLDM2_SMOKE="1",
               JUPYTER_DATA_DIR=str(folder / "jupyter-data"))
    done = subprocess.run([sys.executable, "-m", "helpers.run_course", "--out", str(folder / "run")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    return CourseRun(folder / "run", done, folder / "jupyter-data")
