"""The course command: a run folder with the executed notebooks, a results table and a chart."""

import json
import re
import signal
import subprocess
import sys
import time

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from helpers import run_course
from helpers.run_course import SUMMARY_COLUMNS


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
    append_row({**base, "configuration": "1. baseline, again", "median_s": 10.5}, run / "results.jsonl")
    summary = run_course.write_summary(run).read_text()
    assert "## The ladder" in summary
    ladder = summary.split("## The ladder")[1].split("## Every measurement")[0]
    assert "| 1. baseline, again |" not in ladder  # a repeated baseline is the noise floor, not a rung
    assert "Measured again in the same run (08's noise floors; a difference no larger is within noise): " \
           "1. baseline: 10.5 s" in ladder
    assert "| 2. fast | float32 | 200 | 10.2 | 0.5 |  | 20 |" in summary  # the ladder table (no spread recorded)
    assert "| 08_summary | 2. fast | CPU | float32 | 200 | 10.2 | 0.5 | 20 |" in summary  # every measurement
    assert "speed and memory only" in summary
    assert (run / "ladder.png").stat().st_size > 1000


def test_without_a_ladder_each_speedup_is_over_its_notebooks_first_row_and_each_bar_names_its_notebook(
        tmp_path, monkeypatch):
    from helpers.results import append_row

    run = tmp_path / "run"
    base = {"device_name": "CPU", "dtype": "float32", "steps": 2, "audio_seconds": 2.56, "model_id": "x",
            "checkpoint_kind": "tiny", "smoke": True, "versions": {"torch": "2.13.0"}}
    for notebook, configuration, seconds in [("01_baseline", "float32, DDIM 2 steps", 1.0),
                                             ("02_negative_prompt", "float32, DDIM 2 steps", 4.0),
                                             ("02_negative_prompt", "negative prompt", 2.0)]:
        append_row({**base, "notebook": notebook, "configuration": configuration, "median_s": seconds},
                   run / "results.jsonl")
    from helpers import plots

    charted, real_plot = {}, plots.plot_speedups

    def spy(labels, seconds, title, smoke=None):
        charted.update(labels=labels, title=title, smoke=smoke)
        return real_plot(labels, seconds, title=title, smoke=smoke)

    monkeypatch.setattr("helpers.plots.plot_speedups", spy)
    summary = run_course.write_summary(run).read_text()
    assert "| 01_baseline | float32, DDIM 2 steps | CPU | float32 | 2 | 2.56 | 1 | 1 |" in summary
    assert "| 02_negative_prompt | float32, DDIM 2 steps | CPU | float32 | 2 | 2.56 | 4 | 1 |" in summary
    assert "| 02_negative_prompt | negative prompt | CPU | float32 | 2 | 2.56 | 2 | 2 |" in summary
    assert "speedup: over the first measurement of the same notebook" in summary
    assert charted["labels"] == ["01 · float32, DDIM 2 steps", "02 · float32, DDIM 2 steps", "02 · negative prompt"]
    assert charted["smoke"] is True and "CPU" in charted["title"]


def test_the_chart_keeps_a_long_title_and_long_labels_inside_the_picture():
    import matplotlib

    matplotlib.use("Agg")
    from helpers.plots import plot_speedups

    labels = ["1. float32, DDIM 200 steps, classic attention, no negative prompt", "7. beyond the blog"]
    figure = plot_speedups(labels, [10.0, 0.5], smoke=True,
                           title="Median latency on CPU (2 cores, x86_64): every measurement (notebook · configuration)")
    figure.canvas.draw()
    inside = figure.bbox
    [title] = [text for text in figure.findobj(matplotlib.text.Text) if text.get_text().startswith("Median")]
    for text in [title, *figure.axes[0].get_yticklabels()]:
        box = text.get_window_extent()
        assert box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y1 <= inside.y1, text.get_text()
    assert "smoke run" in title.get_text() and max(map(len, title.get_text().splitlines())) <= 70


def test_a_cell_that_runs_too_long_is_stopped_reported_and_the_run_goes_on(tmp_path, capfd):
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
    # The runner's lines are its own: one per notebook, no kernel warning, no traceback of the kernel it stopped.
    printed = capfd.readouterr()
    assert [re.sub(r"\d+ s$", "N s", line) for line in printed.out.splitlines()] == [
        "- 01_stuck.ipynb ... FAILED in N s", "- 02_dies.ipynb ... FAILED in N s", "- 03_fine.ipynb ... done in N s"]
    assert printed.err == ""
    assert "ZMQError" in (run / "01_stuck.kernel.log").read_text()  # the stopped kernel's own complaint, kept aside
    assert not (run / "03_fine.kernel.log").exists()  # a kernel with nothing to say leaves no log


def test_a_progress_bar_is_saved_as_the_line_it_ended_on(tmp_path, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the tests' setting; a reader's kernel draws its bars
    bar = _notebook(tmp_path, "01_bar.ipynb", "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'):\n    pass",
                    "import ipywidgets\nipywidgets.IntSlider()")
    run = tmp_path / "run"
    run.mkdir()
    assert run_course.run_notebooks([bar], run, cell_timeout_s=60) == {}
    saved = nbformat.read(run / "01_bar.ipynb", as_version=4)
    [output] = saved.cells[0].outputs  # a widget in the kernel (ipywidgets is there: no TqdmWarning) ...
    assert list(output.data) == ["text/plain"]  # ... saved as the line it ended on
    assert re.fullmatch(r"steps: 100%\|██████████\| 3/3 \[.*\]", output.data["text/plain"])
    [slider] = saved.cells[1].outputs  # any other widget is kept, with its state
    assert "application/vnd.jupyter.widget-view+json" in slider.data
    assert saved.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]


def test_a_run_stopped_from_outside_says_so_saves_what_ran_and_writes_the_summary(tmp_path):
    started = tmp_path / "cell 1 started"
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks, "01_long.ipynb", "print('before')",
              f"open({str(started)!r}, 'w').close()\nimport time\ntime.sleep(600)", "print('never')")
    _notebook(notebooks, "02_next.ipynb", "print('never either')")
    driver = (f"import sys; from pathlib import Path; from helpers import run_course\n"
              f"run_course.NOTEBOOKS_DIR = Path({str(notebooks)!r})\n"
              f"sys.exit(run_course.main(['--out', {str(tmp_path / 'run')!r}]))")
    runner = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=run_course.NOTEBOOKS_DIR.parent)
    try:
        while not started.exists():  # the cell has started: it wrote the file
            assert runner.poll() is None, runner.communicate()
            time.sleep(0.1)
        runner.send_signal(signal.SIGTERM)
        out, err = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 128 + signal.SIGTERM
    assert err.strip() == ("01_long.ipynb: stopped from outside (SIGTERM) while cell 1 ran; what ran is saved in "
                           f"{tmp_path / 'run'}")
    assert "- 01_long.ipynb ... STOPPED after" in out and "02_next" not in out
    partial = nbformat.read(tmp_path / "run" / "01_long.ipynb", as_version=4)
    assert partial.cells[0].outputs[0]["text"] == "before\n"
    assert not (tmp_path / "run" / "02_next.ipynb").exists()
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "- `01_long.ipynb`: stopped from outside (SIGTERM) while cell 1 ran" in summary
    verdicts = (tmp_path / "run" / run_course.VERDICTS_FILE).read_text().splitlines()
    assert verdicts[0].startswith("01_long.ipynb: STOPPED after") and "SIGTERM" in verdicts[0]
    assert verdicts[1] == "02_next.ipynb: not run (the run was stopped before it)"


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
    gpu_command = (run_course.NOTEBOOKS_DIR.parent / "scripts" / "gpu.sh").read_text()  # the notebooks, then the bench
    assert "-m helpers.run_course" in gpu_command and "-m helpers.bench --deadline" in gpu_command
    assert "full-size" in gpu_command
    results = tmp_path / "results"
    assert run_course.main(["--out", str(tmp_path / "run"), "--only", "08", "--results-dir", str(results)]) == 0
    [written] = results.glob("*.md")
    assert written.name.startswith("cpu-") and written.name.endswith(".md")  # cpu-2-cores-x86-64-<date>.md here
    text = written.read_text()
    assert "- command: `AUDIOLDM2_MODEL=" in text and "--only 08 --results-dir" in text
    assert "## 08_summary" in text and "| configuration | dtype | steps |" in text
    assert "fixed_s | per_step_s | peak_allocated_gib | peak_memory_gib |" in text
    assert "1. float32, DDIM 2 steps (the blog: 200), classic attention" in text
    assert "6. + DPM-Solver++ 2 steps (the blog: 20)" in text
    assert "7. beyond the blog" in text and "8. + approximations" in text
    assert "## Where the time went: 08_summary, 8. + approximations" in text  # the last rung's split
    assert "| UNet |" in text and "| GPT-2 |" in text and "| everything else |" in text
    assert "SMOKE RUN" in text
    # A second run the same day on the same device keeps the first file.
    assert run_course.write_results_file(tmp_path / "run", results, {}, "again").name.endswith("-2.md")


# ------------------------------------------------------------------------------------------------------------
# The whole course, run once on the tiny checkpoint in the CPU profile (the course_run fixture in conftest.py)
# ------------------------------------------------------------------------------------------------------------
# A cell plots when its code calls one of the course's plot helpers, pyplot, or a .plot( method (pandas, Axes).
PLOTTING = re.compile(r"\bh\.(?:plots\.)?plot_\w+\(|\bplt\.\w+\(|\.plot\(")
# The cells that load the pipeline (h.setup in every notebook after 00; 00 does it by hand).
LOADING = re.compile(r"\bh\.setup\(|\bload_pipeline\(|\.from_pretrained\(")


def _code(cell) -> str:
    """A code cell's source without comments: a plot named in a comment draws nothing."""
    return "\n".join(line.split("#", 1)[0] for line in cell.source.splitlines())


def _stream(cell, name: str) -> str:
    return "".join(output.get("text", "") for output in cell.outputs
                   if output.output_type == "stream" and output.name == name)


def _executed(course_run):
    notebooks = sorted(course_run.folder.glob("[0-9][0-9]_*.ipynb"))
    assert [path.name for path in notebooks] == [path.name for path in run_course.course_notebooks()]
    return {path.name: nbformat.read(path, as_version=4) for path in notebooks}


def test_the_course_run_says_one_line_per_notebook_and_finishes(course_run):
    done = course_run.done
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    notebook_lines = [line for line in lines if line.startswith("- ")]
    assert len(notebook_lines) == len(run_course.course_notebooks())
    for line in notebook_lines:  # nothing of a kernel's own in between ("Kernel is running over TCP ...")
        assert re.fullmatch(r"- \d\d_\w+\.ipynb \.\.\. done in \d+ s", line), line
    assert done.stderr == ""
    assert "Traceback" not in done.stdout and "WARNING" not in done.stdout


def test_every_plotting_cell_of_the_course_run_saved_its_image(course_run):
    missing = []
    for name, notebook in _executed(course_run).items():
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code" or not PLOTTING.search(_code(cell)):
                continue
            has_image = any("image/png" in output.get("data", {}) for output in cell.outputs)
            said_why_not = "no chart" in _stream(cell, "stdout")  # a cell that plots only sometimes says so
            if not (has_image or said_why_not):
                missing.append(f"{name} cell {index}: {cell.source.splitlines()[0]}")
    assert not missing, "plotting cells saved without an image:\n" + "\n".join(missing)


def test_the_course_run_has_no_tqdm_warning_and_its_loading_cells_at_most_one_line_of_stderr(course_run):
    loading_cells = 0
    for name, notebook in _executed(course_run).items():
        assert "TqdmWarning" not in json.dumps([cell.get("outputs", []) for cell in notebook.cells]), name
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code" and LOADING.search(_code(cell)):
                loading_cells += 1
                stderr = _stream(cell, "stderr")
                assert len(stderr.splitlines()) <= 1, f"{name} cell {index} says on stderr:\n{stderr}"
    assert loading_cells >= len(run_course.course_notebooks())  # every notebook loads the pipeline


def test_the_course_run_notebooks_are_signed_and_name_their_kernel_as_jupyterlab_does(course_run):
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary(data_dir=str(course_run.jupyter_data))
    expected = run_course.kernelspec_metadata("python3")
    for name, notebook in _executed(course_run).items():
        assert notary.check_signature(notebook), f"{name} is not signed: JupyterLab would not trust its HTML"
        assert notebook.metadata.kernelspec == expected, name
        assert notebook.metadata.language_info["name"] == "python"  # nbclient copies the kernel's language_info
    assert expected["display_name"]  # e.g. "Python 3 (ipykernel)": what Lab writes when the kernel starts


def test_the_course_run_summary_has_a_speedup_for_every_measurement_and_a_chart(course_run):
    from helpers.results import read_table

    table = read_table(course_run.folder / "results.jsonl")
    assert not table.empty
    summary = (course_run.folder / "summary.md").read_text()
    every = summary.split("## Every measurement of the run", 1)[1]
    rows = [line for line in every.splitlines() if line.startswith("| ") and not line.startswith("| notebook")]
    assert len(rows) == len(table)
    speedup = SUMMARY_COLUMNS.index("speedup") + 1  # +1: the empty field before the first "|"
    assert all(row.split("|")[speedup].strip() for row in rows), "a row without a speed-up"
    assert (course_run.folder / "ladder.png").stat().st_size > 1000


def test_only_naming_no_notebook_is_one_line(capsys):
    assert run_course.main(["--only", "99"]) == 2
    assert capsys.readouterr().err.strip() == ("error: no notebook's name starts with 99: give prefixes such as 00 08")
