"""The course command: a run folder with the executed notebooks, a results table and a chart."""

import subprocess
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from helpers import run_course


def _notebook(folder, name, *sources):
    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / name
    nbformat.write(notebook, path)
    return path


def test_course_stops_at_once_without_network(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "AUDIOLDM2_MODEL": "cvssp/audioldm2"}
    result = subprocess.run([sys.executable, "-m", "helpers.run_course", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "cannot be reached" in result.stderr and "AUDIOLDM2_MODEL=tiny" in result.stderr
    assert not (tmp_path / "run").exists()


def test_course_runs_the_setup_notebook_into_a_run_folder(tmp_path, monkeypatch):
    for name in ("AUDIOLDM2_MODEL", "AUDIOLDM2_RESULTS"):  # main() sets them; restore them afterwards
        monkeypatch.setenv(name, __import__("os").environ[name])
    assert run_course.main(["--out", str(tmp_path / "run"), "--only", "00"]) == 0
    run = tmp_path / "run"
    assert (run / "00_setup.ipynb").is_file() and (run / "00_setup.wav").is_file()
    assert "<audio" in (run / "00_setup.ipynb").read_text()  # the players are saved with the executed notebook
    summary = (run / "summary.md").read_text()
    assert summary.startswith("# AudioLDM 2, faster")


def test_summary_has_a_ladder_table_and_chart(tmp_path):
    from helpers.results import append_row

    run = tmp_path / "run"
    base = {"notebook": "08_summary", "device_name": "CPU", "dtype": "float32", "steps": 200, "audio_seconds": 10.24,
            "model_id": "x", "checkpoint_kind": "full-size", "smoke": False, "versions": {"torch": "2.13.0"}}
    append_row({**base, "configuration": "1. baseline", "median_s": 10.0}, run / "results.jsonl")
    append_row({**base, "configuration": "2. fast", "median_s": 0.5}, run / "results.jsonl")
    summary = run_course.write_summary(run).read_text()
    assert "## The ladder" in summary
    assert "| 2. fast | float32 | 200 | 10.2 | 0.5 |  | 20 |" in summary  # the ladder table (no spread recorded)
    assert "| 08_summary | 2. fast | CPU | float32 | 200 | 10.2 | 0.5 | 20 |" in summary  # every measurement
    assert "speed and memory only" in summary
    assert (run / "ladder.png").stat().st_size > 1000


def test_a_cell_that_runs_too_long_is_stopped_reported_and_the_run_goes_on(tmp_path):
    stuck = _notebook(tmp_path, "01_stuck.ipynb", "print('before')", "import time\ntime.sleep(3600)", "print('never')")
    dies = _notebook(tmp_path, "02_dies.ipynb", "import os\nos._exit(1)")
    fine = _notebook(tmp_path, "03_fine.ipynb", "print('after')")
    run = tmp_path / "run"
    run.mkdir()
    failures = run_course.run_notebooks([stuck, dies, fine], run, cell_timeout_s=5)
    assert list(failures) == ["01_stuck.ipynb", "02_dies.ipynb"]
    assert failures["01_stuck.ipynb"].startswith("cell 1 ran for more than 5 s and was stopped")
    assert failures["02_dies.ipynb"].startswith("the kernel died in cell 0")
    ran = nbformat.read(run / "03_fine.ipynb", as_version=4)
    assert ran.cells[0].outputs[0]["text"] == "after\n"  # the next notebook ran
    partial = nbformat.read(run / "01_stuck.ipynb", as_version=4)
    assert partial.cells[0].outputs[0]["text"] == "before\n"  # saved as far as it ran
    summary = run_course.write_summary(run, failures).read_text()
    assert "## Notebooks that did not finish" in summary
    assert "`01_stuck.ipynb`: cell 1 ran for more than 5 s" in summary


def test_an_error_of_the_runner_itself_says_where_it_was_raised(tmp_path, monkeypatch):
    # On an H200, nbclient itself raised a bare AssertionError (no message, no cell output): the place is the clue.
    def execute_fails(client, **kwargs):
        raise AssertionError

    monkeypatch.setattr("nbclient.NotebookClient.execute", execute_fails)
    notebook = _notebook(tmp_path, "01_one.ipynb", "print('never')")
    run = tmp_path / "run"
    run.mkdir()
    failure = run_course.run_notebooks([notebook], run, cell_timeout_s=5)["01_one.ipynb"]
    assert failure.startswith("AssertionError:  (while cell None ran: raised at ")
    assert f"test_run_course.py:{execute_fails.__code__.co_firstlineno + 1}" in failure
    assert "the whole traceback is in 01_one.error.txt" in failure
    assert "in execute_fails" in (run / "01_one.error.txt").read_text()


def test_the_gpu_command_writes_a_results_file_with_the_ladder_split_and_memory(tmp_path, monkeypatch):
    for name in ("AUDIOLDM2_MODEL", "AUDIOLDM2_RESULTS"):  # main() sets them; restore them afterwards
        monkeypatch.setenv(name, __import__("os").environ[name])
    gpu_command = (run_course.NOTEBOOKS_DIR.parent / "scripts" / "gpu.sh").read_text()  # now the benchmark (issue 16)
    assert "-m helpers.bench --deadline" in gpu_command and "full-size" in gpu_command
    results = tmp_path / "results"
    assert run_course.main(["--out", str(tmp_path / "run"), "--only", "08", "--results-dir", str(results)]) == 0
    [written] = results.glob("*.md")
    assert written.name.startswith("cpu-") and written.name.endswith(".md")  # cpu-2-cores-x86-64-<date>.md here
    text = written.read_text()
    assert "- command: `AUDIOLDM2_MODEL=" in text and "--only 08 --results-dir" in text
    assert "## 08_summary" in text and "| configuration | dtype | steps |" in text
    assert "fixed_s | per_step_s | peak_allocated_gib | peak_memory_gib |" in text
    assert "1. float32, DDIM 2, classic attention" in text and "6. + DPM-Solver++ 2 steps" in text
    assert "7. beyond the blog" in text and "## Where the time went: 08_summary, 7. beyond the blog" in text
    assert "| UNet |" in text and "| GPT-2 |" in text and "| everything else |" in text
    assert "SMOKE RUN" in text
    # A second run the same day on the same device keeps the first file.
    assert run_course.write_results_file(tmp_path / "run", results, {}, "again").name.endswith("-2.md")
