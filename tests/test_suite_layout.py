"""How the suite is laid out on pytest-xdist's workers (conftest.py): what goes whole to one worker, the course run
read by every test that needs it on one worker, and torch's threads shared out between the workers."""

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# By path: `import conftest` can mean tests/faults/conftest.py.
_spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
root_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(root_conftest)
root_conftest._SESSION_DIR.rmdir()  # the empty folder its import made (this copy's session never starts)


def test_every_test_that_reads_the_course_run_goes_to_one_worker_and_a_notebook_whole_to_one():
    unit = root_conftest.work_unit
    course = root_conftest.COURSE_RUN_UNIT
    assert unit("tests/test_browser.py::test_the_html_export_shows_the_players_plots_and_tables_and_no_error_or_"
                "warning") == course
    assert unit("tests/test_cpu_profile_run.py::test_no_listening_cell_plays_a_solver_below_10_steps[04]") == course
    assert unit("tests/test_run_course.py::test_every_plotting_cell_of_the_course_run_saved_its_image") == course
    assert unit("tests/test_run_course.py::test_course_runs_the_setup_notebook_into_a_run_folder") == \
        "tests/test_run_course.py"  # runs a notebook of its own
    assert unit("notebooks/05_torch_compile.ipynb::Cell 7") == unit("notebooks/05_torch_compile.ipynb::Cell 30") == \
        "notebooks/05_torch_compile.ipynb"
    assert unit("tests/faults/test_job_faults.py::test_runs_killed_at_random_moments") == \
        "tests/faults/test_job_faults.py"


def test_the_units_named_longest_first_exist():
    for name in root_conftest.LONGEST_FIRST:
        assert name == root_conftest.COURSE_RUN_UNIT or (ROOT / name).is_file(), name
    for name in root_conftest.COURSE_RUN_FILES:
        assert (ROOT / name).is_file(), name


@pytest.mark.parametrize("workers, cores, threads", [(2, 2, 1), (2, 8, 4), (3, 2, 1)])
def test_each_worker_gets_its_share_of_the_cores(monkeypatch, workers, cores, threads):
    before = torch.get_num_threads()
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    monkeypatch.setenv("OMP_NUM_THREADS", "99")  # monkeypatch puts back what was there
    monkeypatch.setenv("MKL_NUM_THREADS", "99")
    monkeypatch.setattr(root_conftest.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    try:
        root_conftest._share_the_cores()
        assert torch.get_num_threads() == threads
        assert root_conftest.os.environ["OMP_NUM_THREADS"] == str(threads)  # kernels and subprocesses inherit it
    finally:
        torch.set_num_threads(before)


def test_without_workers_nothing_is_changed(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    before = torch.get_num_threads()
    root_conftest._share_the_cores()
    assert torch.get_num_threads() == before and root_conftest.os.environ["OMP_NUM_THREADS"] == "7"
