"""Test set-up: every test and every notebook runs offline on a tiny random checkpoint.

The checkpoint is built once per session, before nbval starts its kernels, so that the kernels
inherit ``AUDIOLDM2_MODEL`` pointing at it (``pytest_sessionstart`` runs before any collector).

``scripts/test.sh`` runs the suite on two pytest-xdist workers (``-n 2``): each worker is a session of its own (its
own tiny checkpoint, torch on its share of the cores), and a *work unit* goes whole to one worker: a test file, a
notebook's cells (nbval runs them in one kernel, in order), or the ``course-run`` unit, every test that reads the
one headless run of the course (``course_run``). The units are handed out longest first (:data:`LONGEST_FIRST`),
so that the two workers finish close together.
"""

import os
import re
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
COURSE_RUN_UNIT = "course-run"
# The tests that read the course run (the course_run fixture) and so must share one worker, or the course would run
# once per worker: these files, and in tests/test_run_course.py the tests named "..._the_course_run_...". The
# scheduler sees only test ids, not fixtures; pytest_collection_modifyitems checks that every test using course_run
# is in this unit.
COURSE_RUN_FILES = ("tests/test_browser.py", "tests/test_cpu_profile_run.py")
COURSE_RUN_NAMES = re.compile(r"^tests/test_run_course\.py::test_\w*the_course_run_")
# The work units that take longest on a 2-core CPU, in that order (`--durations=15` at the end of a run says what
# took long): handed out first, the rest in collection order after them.
LONGEST_FIRST = (COURSE_RUN_UNIT, "tests/test_colab_shaped.py", "tests/test_full_size.py",
                 "notebooks/05_torch_compile.ipynb", "tests/test_bench.py", "tests/faults/test_job_faults.py",
                 "tests/test_offline.py", "tests/test_gpu_script.py", "tests/test_compile_cache.py")


def _share_the_cores() -> None:
    """Under pytest-xdist, give torch (and every kernel and process a worker starts) its share of the cores, so that
    two workers do not fight over them. Before torch is imported: OMP_NUM_THREADS is read then."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 2:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = str(max(1, cores // workers))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = threads
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


def pytest_configure(config):
    _share_the_cores()
    # Compiled kernels go to a folder of this run's (set once, by the controller; its workers inherit it), never to
    # the reader's ~/.cache: what a test measures of a compile must not depend on an earlier run.
    os.environ.setdefault("AUDIOLDM2_COMPILE_CACHE", str(_SESSION_DIR / "compile-cache"))


def work_unit(nodeid: str) -> str:
    """What goes whole to one xdist worker: the course-run unit, else the test's file (a notebook: all its cells,
    which nbval runs in one kernel, in order)."""
    path = nodeid.split("::", 1)[0]
    if path in COURSE_RUN_FILES or COURSE_RUN_NAMES.match(nodeid):
        return COURSE_RUN_UNIT
    return path


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduling, with :func:`work_unit` as the scope and the units in collection order (which
    pytest_collection_modifyitems made longest first). (xdist's own ``--dist loadgroup`` renames test ids, which
    pytest 9.2 no longer lets it do.)"""
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return WorkUnitScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    misplaced = [item.nodeid for item in items
                 if "course_run" in getattr(item, "fixturenames", ()) and work_unit(item.nodeid) != COURSE_RUN_UNIT]
    if misplaced:
        raise pytest.UsageError("these tests read the course run but are outside conftest.COURSE_RUN_FILES and "
                                "COURSE_RUN_NAMES, so another worker would run the course again: "
                                + ", ".join(misplaced))
    for item in items:
        if work_unit(item.nodeid) == COURSE_RUN_UNIT and "course_run" in getattr(item, "fixturenames", ()) \
                and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow(reason="reads the course run (the course_run fixture): the whole course "
                                                    "executed headless in the CPU profile first, minutes"))
    unexplained = sorted({item.nodeid.split("::", 1)[0] for item in items
                          if (mark := item.get_closest_marker("slow")) and not mark.kwargs.get("reason")})
    if unexplained:
        raise pytest.UsageError("a test marked slow must say why: @pytest.mark.slow(reason=...) in "
                                + ", ".join(unexplained))
    rank = {unit: index for index, unit in enumerate(LONGEST_FIRST)}
    # sorted() keeps the collection order within a unit and among the units not named.
    items[:] = sorted(items, key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))


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
    """The whole course run once headless by the course runner, as a reader on a CPU runs it: the CPU profile (no
    smoke mode), no GPU, half precision only where the CPU computes it; the tiny checkpoint. As
    ``AUDIOLDM2_MODEL=tiny bash scripts/course.sh`` runs it on a machine without a GPU.

    The one run of the course in a test session (nbval's kernels excepted): the runner's tests
    (tests/test_run_course.py), the CPU profile's scans (tests/test_cpu_profile_run.py) and the browser test
    (tests/test_browser.py) all read it.
    Its tests form one xdist work unit (``course-run``), so it runs once, on one worker, on that worker's share of
    the cores. A few minutes.
    """
    from helpers import settings

    folder = tmp_path_factory.mktemp("course")
    env = {name: value for name, value in os.environ.items() if name not in _TEST_ONLY_VARIABLES}
    env.pop(settings.FULL_ENV, None)
    env.update({settings.MODEL_ENV: str(tiny_checkpoint), settings.SMOKE_ENV: "0", "CUDA_VISIBLE_DEVICES": "",
                "JUPYTER_DATA_DIR": str(folder / "jupyter-data")})
    done = subprocess.run([sys.executable, "-m", "helpers.run_course", "--out", str(folder / "run"),
                           "--cell-timeout", "600"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    return CourseRun(folder / "run", done, folder / "jupyter-data")
