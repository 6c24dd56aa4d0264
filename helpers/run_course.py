"""Run the whole course headless and summarise what it measured.

    python -m helpers.run_course                 # every notebook, with $AUDIOLDM2_MODEL (default cvssp/audioldm2)
    python -m helpers.run_course --only 00 08    # some of them
    AUDIOLDM2_MODEL=DIR AUDIOLDM2_SMOKE=1 python -m helpers.run_course   # a quick offline dry run

Each notebook is executed with nbclient into a run folder (``runs/<time>/`` by default), next to the
results log they all append to, a ``summary.md`` table and a ``ladder.png`` chart of it.

A notebook that fails (an error in a cell, a cell that runs past ``--cell-timeout``, a kernel that dies) is
reported in one line and in the summary, and the run goes on with the next notebook. A signal (a time limit's
SIGTERM, Ctrl+C) stops the run: one line says so and where, what ran is saved, the summary written.

The executed notebooks are saved as a learner would see them: every plot (the kernels draw with matplotlib's
inline backend whatever the runner's own ``MPLBACKEND``), tqdm's bars as the line each ended on, signed (JupyterLab trusts
their HTML), with the kernelspec Lab would write (opening one marks nothing modified). The runner's lines are
its own: what a kernel prints outside its notebook goes to ``NN_name.kernel.log`` beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.sign import NotebookNotary

from helpers import settings
from helpers.errors import CourseError

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
# Long enough for the slowest cell of a full run on a CPU (08's first rung on the full-size model: about half
# an hour), short enough that a stuck cell cannot hold a run for ever.
DEFAULT_CELL_TIMEOUT_S = 3600
# What every kernel gets on top of the runner's environment. matplotlib's inline backend is what a kernel picks
# when MPLBACKEND is unset; set here, so that a runner started with MPLBACKEND=Agg (a CI's habit) still saves
# every plot in its notebooks.
KERNEL_ENV = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
SUMMARY_COLUMNS = ["notebook", "configuration", "device_name", "dtype", "steps", "audio_seconds", "median_s",
                   "speedup", "realtime_factor", "peak_memory_gib"]
LADDER_COLUMNS = ["configuration", "dtype", "steps", "audio_seconds", "median_s", "spread_s", "speedup",
                  "realtime_factor", "peak_memory_gib"]
LADDER_NOTEBOOK = "08_summary"
VERDICTS_FILE = "verdicts.txt"  # one line per notebook: done, FAILED (why) or not run


class StoppedFromOutside(Exception):
    """The run was stopped by a signal (a time limit's SIGTERM, Ctrl+C's SIGINT): say so, save, summarise, stop."""

    def __init__(self, signal_name: str, where: str = "before it started"):
        super().__init__(f"stopped from outside ({signal_name}) {where}")
        self.signal_name = signal_name
        self.failures: dict[str, str] = {}  # run_notebooks: what failed or stopped so far, this one included


class CourseNotebookClient(NotebookClient):
    """nbclient's client, made to run quietly and to know when it was stopped from outside.

    * Each kernel gets :data:`KERNEL_ENV` (plots are saved as images) and CurveZMQ keys where the kernel
      supports them, so ipykernel has no unencrypted-TCP warning to print.
    * A signal (SIGTERM, SIGINT) cancels the notebook's run and is remembered in ``stopped_by``. nbclient's own
      handler shuts the kernel down and drops its client, and the run then fails on a bare ``AssertionError``
      that does not say what happened.
    """

    stopped_by: str | None = None

    def create_kernel_manager(self):
        manager = super().create_kernel_manager()
        if hasattr(manager, "transport_encryption") and _zmq_has_curve():  # jupyter_client >= 8.10
            manager.transport_encryption = "auto"
        return manager

    async def async_start_new_kernel(self, **kwargs) -> None:
        # Called inside nbclient's async_setup_kernel, right after it installed its signal handlers: replace them.
        loop = asyncio.get_running_loop()

        def stop(signal_number: int) -> None:
            self.stopped_by = signal.Signals(signal_number).name
            for task in asyncio.all_tasks(loop):  # the notebook's run and nbclient's pollers: it shuts the kernel
                task.cancel()                      # down on the way out

        if threading.current_thread() is threading.main_thread():
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signal_number, stop, signal_number)
                except (NotImplementedError, RuntimeError):  # Windows: no signal handlers on an event loop
                    pass
        await super().async_start_new_kernel(**kwargs)


def _zmq_has_curve() -> bool:
    import zmq

    return bool(zmq.has("curve"))


def course_notebooks(only: list[str] | None = None) -> list[Path]:
    """The course's notebooks in order, or those whose names start with one of ``only``."""
    paths = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [path for path in paths if any(path.name.startswith(prefix) for prefix in only)]
    return paths


def execute_notebook(source: Path, run_dir: Path, cell_timeout_s: int | None = DEFAULT_CELL_TIMEOUT_S) -> str | None:
    """Execute ``source`` with its working folder in ``run_dir``; save it there (as far as it ran), signed.

    Returns None when every cell ran, else one line that says which cell failed and how. Raises
    :class:`StoppedFromOutside`, after saving, when a signal stopped it. What the kernel process itself prints
    outside the notebook (its own log, a native library's messages) goes to ``<name>.kernel.log`` beside it,
    kept only when not empty, so that the runner's lines stay its own.
    """
    notebook = nbformat.read(source, as_version=4)
    running = {"cell": None}
    client = CourseNotebookClient(notebook, timeout=cell_timeout_s, kernel_name="python3",
                                  resources={"metadata": {"path": str(run_dir)}},
                                  on_cell_start=lambda cell, cell_index: running.update(cell=cell_index))
    kernel_log = run_dir / f"{source.stem}.kernel.log"
    try:
        with open(kernel_log, "w") as log:
            client.execute(env={**os.environ, **KERNEL_ENV}, stdout=log, stderr=log)
    except BaseException as failure:
        # nbclient reports a run stopped by a signal as a dead kernel, or as an AssertionError: name the signal.
        stopped_by = client.stopped_by or getattr(failure, "signal_name", None) \
            or ("SIGINT" if isinstance(failure, KeyboardInterrupt) else None)
        if stopped_by:
            where = "before its first cell" if running["cell"] is None else f"while cell {running['cell']} ran"
            raise StoppedFromOutside(stopped_by, where) from None
        if not isinstance(failure, Exception):
            raise
        return what_failed(failure, running["cell"], cell_timeout_s, run_dir / source.name)
    finally:
        notebook.metadata["kernelspec"] = kernelspec_metadata(client.kernel_name)
        progress_bars_as_text(notebook)
        save_signed(notebook, run_dir / source.name)
        if kernel_log.exists() and kernel_log.stat().st_size == 0:
            kernel_log.unlink()
    return None


def what_failed(failure: Exception, cell: int | None, cell_timeout_s: int | None, notebook: Path) -> str:
    """One line for a notebook that did not finish: which cell, and what happened."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    if isinstance(failure, CellExecutionError):
        last_line = re.sub(r"\x1b\[[0-9;]*m", "", str(failure)).strip().splitlines()[-1]  # no terminal colours
        return f"cell {cell}: {last_line}"
    if isinstance(failure, CellTimeoutError):
        return f"cell {cell} ran for more than {cell_timeout_s} s and was stopped (--cell-timeout sets the limit)"
    if isinstance(failure, DeadKernelError):
        return (f"the kernel died in cell {cell} (out of host memory is the usual cause: "
                "try AUDIOLDM2_SMOKE=1 or a machine with more memory)")
    # the kernel would not start, a notebook that cannot be read, ...
    return f"{type(failure).__name__}: {failure} (while cell {cell} ran: {where_raised(failure, notebook)})"


def progress_bars_as_text(notebook) -> None:
    """Save each tqdm bar as the one line it ended on ("100%|██████████| 2/2 [...]"), not as a widget.

    In a live notebook tqdm draws a bar as widgets (a label, a progress bar, the counts). Saved as widgets, a
    bar shows only where the saved widget state is redrawn, with a "disconnected" mark (JupyterLab), or not at
    all (an HTML export offline), and a viewer without widgets shows its plain-text stand-in, written at 0 %.
    The widget state nbclient saves holds how each bar ended: that line becomes the output.
    """
    import html

    widgets = notebook.metadata.get("widgets", {})
    state = widgets.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})

    def model(reference: str) -> dict:
        return state.get(reference.removeprefix("IPY_MODEL_"), {}).get("state", {})

    views_left = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            parts = [model(child) for child in model(view["model_id"]).get("children", [])] if view else []
            if [part.get("_model_name") for part in parts] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
                views_left += bool(view)
                continue
            label, bar, counts = parts
            filled = round(10 * bar["value"] / bar["max"]) if bar.get("max") else 0
            line = f"{label['value']}|{'█' * filled}{' ' * (10 - filled)}|{counts['value']}"
            output["data"] = {"text/plain": html.unescape(line).replace("\u2007", " ")}  # tqdm's figure spaces
    if widgets and not views_left:
        del notebook.metadata["widgets"]


def kernelspec_metadata(kernel_name: str) -> dict:
    """The ``kernelspec`` JupyterLab writes into a notebook when its kernel starts (name, display name, language).

    Saved so, with the ``language_info`` nbclient copied from the same kernel, an executed notebook opened in Lab
    has nothing for Lab to change, so Lab does not show it as modified before any edit.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(kernel_name)
    return {"display_name": spec.display_name, "language": spec.language, "name": kernel_name}


def save_signed(notebook, path: Path) -> None:
    """Write ``notebook`` signed with this user's Jupyter secret, so that Jupyter trusts its HTML and scripts.

    The runner executed every output itself; unsigned, JupyterLab would show the notebook as not trusted
    and hold back its HTML outputs' scripts (and log "Notebook ... is not trusted").
    """
    NotebookNotary().sign(notebook)
    nbformat.write(notebook, path)


def where_raised(error: BaseException, notebook: Path) -> str:
    """``raised at FILE:LINE``, with the whole traceback written next to ``notebook`` for a closer look.

    An error of the runner itself (not of a cell) has no cell output to read, and its message can be empty
    (a bare ``AssertionError``): the place it was raised is then the only clue.
    """
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    log = notebook.with_suffix(".error.txt")
    log.write_text("".join(traceback.format_exception(error)))
    place = f"raised at {frames[-1].filename}:{frames[-1].lineno}" if frames else "no traceback"
    return f"{place}; the whole traceback is in {log.name}"


def run_notebooks(notebooks: list[Path], run_dir: Path, cell_timeout_s: int | None) -> dict[str, str]:
    """Execute each notebook in turn into ``run_dir``; returns ``{notebook name: what failed}``.

    ``run_dir/verdicts.txt`` gets one line per notebook as it ends ("done in 12 s", "FAILED in 30 s: ..."), and
    the notebooks a stopped run never reached, "not run". A signal ends the run: :class:`StoppedFromOutside`
    carries the failures so far, the stopped notebook's among them (saved as far as it ran).
    """
    failures: dict[str, str] = {}
    verdicts = run_dir / VERDICTS_FILE
    verdicts.write_text("")

    def verdict(name: str, text: str) -> None:
        with open(verdicts, "a") as file:
            file.write(f"{name}: {text}\n")

    for index, notebook in enumerate(notebooks):
        started = time.perf_counter()
        try:
            _raise_on_sigterm()  # between notebooks too (nbclient resets the handler after each one)
            print(f"- {notebook.name} ...", end=" ", flush=True)
            error = execute_notebook(notebook, run_dir, cell_timeout_s)
        except (StoppedFromOutside, KeyboardInterrupt) as stopped:
            if isinstance(stopped, KeyboardInterrupt):
                stopped = StoppedFromOutside("SIGINT")
            print(f"STOPPED after {time.perf_counter() - started:.0f} s", flush=True)
            failures[notebook.name] = str(stopped)
            verdict(notebook.name, f"STOPPED after {time.perf_counter() - started:.0f} s: {stopped}")
            for later in notebooks[index + 1:]:
                verdict(later.name, "not run (the run was stopped before it)")
            stopped.failures = failures
            raise stopped from None
        took = f"in {time.perf_counter() - started:.0f} s"
        print(f"{'FAILED' if error else 'done'} {took}", flush=True)
        verdict(notebook.name, f"FAILED {took}: {error}" if error else f"done {took}")
        if error:
            failures[notebook.name] = error
    return failures


def _raise_on_sigterm() -> None:
    """Turn SIGTERM (a time limit, ``kill``) into :class:`StoppedFromOutside`, as Python does SIGINT."""
    def stop(signal_number, frame):
        raise StoppedFromOutside(signal.Signals(signal_number).name)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def write_summary(run_dir: Path, failures: dict[str, str] | None = None) -> Path:
    """Write ``summary.md`` (what failed, a table of every measurement) and ``ladder.png`` (its chart).

    speedup: each measurement's over the first one of its notebook (in 08, the ladder's first rung). The chart
    shows 08's ladder when the run has it, else every measurement, each bar labelled with its notebook.
    """
    import matplotlib

    matplotlib.use("Agg")  # the runner's own chart, in this process only (the kernels keep their inline plots)
    import matplotlib.pyplot as plt

    from helpers.plots import plot_speedups
    from helpers.results import markdown_table, read_table

    table = read_table(run_dir / "results.jsonl")
    lines = [f"# AudioLDM 2, faster: results of the run in {run_dir.name}", ""]
    if failures:
        lines += ["## Notebooks that did not finish", ""]
        lines += [f"- `{name}`: {error} (open `{name}` in this folder to see where)" for name, error in failures.items()]
        lines.append("")
    if table.empty:
        lines.append("No measurement was recorded.")
    else:
        table["speedup"] = speedups(table)
        in_08 = table[table["notebook"] == LADDER_NOTEBOOK]
        repeated = in_08["configuration"].str.endswith(", again")  # 08's baselines measured again: its noise floors
        ladder, again = in_08[~repeated], in_08[repeated]
        first = table.iloc[0]
        smoke = bool(table["smoke"].any())
        lines += [
            f"Model: `{first['model_id']}` ({first['checkpoint_kind']}); device: {first['device_name']}; "
            f"{first['versions']}.",
        ]
        if first["checkpoint_kind"] != "real":
            lines.append("Random weights: speed and memory only; the audio is noise."
                         + (" Tiny model: its speed says nothing about the real one." if first["checkpoint_kind"] == "tiny" else ""))
        if smoke:
            lines.append("SMOKE RUN: steps and lengths were capped; these figures check the code, they measure nothing.")
        if not ladder.empty:
            lines += ["", "## The ladder (notebook 08: every rung in one process, same seed)", "",
                      "speedup: over the first rung; realtime_factor: seconds of audio per second of compute; "
                      "peak memory: GPU reserved on CUDA, process RSS elsewhere.", "",
                      markdown_table(ladder, LADDER_COLUMNS)]
            lines += [f"Measured again in the same run (08's noise floors; a difference no larger is within noise): "
                      f"{row.configuration.removesuffix(', again')}: {row.median_s:.3g} s" for row in again.itertuples()]
        lines += ["", "![ladder](ladder.png)", "", "## Every measurement of the run", "",
                  "speedup: over the first measurement of the same notebook (in 08, the first rung).", "",
                  markdown_table(table, SUMMARY_COLUMNS), ""]
        if not ladder.empty:
            labels, what = list(ladder["configuration"]), "the ladder (08)"
        else:
            labels = [f"{notebook[:2]} · {configuration}" for notebook, configuration
                      in zip(table["notebook"], table["configuration"])]
            what = "every measurement (notebook · configuration)"
        chart_rows = ladder if not ladder.empty else table
        figure = plot_speedups(labels, list(chart_rows["median_s"]),
                               title=f"Median latency on {first['device_name']}: {what}", smoke=smoke)
        figure.savefig(run_dir / "ladder.png", dpi=120)
        plt.close(figure)
    summary = run_dir / "summary.md"
    summary.write_text("\n".join(lines))
    return summary


def speedups(table):
    """Each row's speed-up over the first row of its notebook: ``first median / this median``."""
    first_median = table.groupby("notebook", sort=False)["median_s"].transform("first")
    return first_median / table["median_s"]


RESULTS_FILE_COLUMNS = ["configuration", "dtype", "steps", "audio_seconds", "median_s", "spread_s", "first_call_s",
                        "fixed_s", "per_step_s", "peak_allocated_gib", "peak_memory_gib"]


def results_file_name(device_name: str, day: str) -> str:
    """``NVIDIA H200``, ``2026-11-26`` -> ``nvidia-h200-2026-11-26.md``."""
    return f"{re.sub(r'[^a-z0-9]+', '-', device_name.lower()).strip('-')}-{day}.md"


def write_results_file(run_dir: Path, results_dir: Path, failures: dict[str, str], command: str) -> Path | None:
    """Write the run's measurements as ``results_dir/<device>-<date>.md``, the file to commit; its path.

    What a GPU run is for: each configuration's median, spread and first call, its fixed part and cost per step,
    GPU memory allocated and reserved, where the last measured configuration's time went, the versions and the
    command. Nothing is written when nothing was measured; an existing file is never overwritten.
    """
    from helpers.results import markdown_table, read_rows, read_table

    rows, table = read_rows(run_dir / "results.jsonl"), read_table(run_dir / "results.jsonl")
    if not rows:
        return None
    first = rows[0]
    day = first["recorded_at"][:10]
    path = results_dir / results_file_name(first["device_name"], day)
    for copy in range(2, 100):
        if not path.exists():
            break
        path = results_dir / results_file_name(first["device_name"], f"{day}-{copy}")
    versions = ", ".join(f"{name} {version}" for name, version in first["versions"].items())
    lines = [f"# {first['device_name']}, {day}", "",
             f"- command: `{command}`",
             f"- model: `{first['model_id']}` ({first['checkpoint_kind']})"
             + ("; random weights: the timings and memory are real, the audio is noise"
                if first["checkpoint_kind"] != "real" else ""),
             f"- versions: {versions}",
             "- seconds per clip: the median of the timed runs after a warm-up call; fixed part and per step from one "
             "more generation with each stage timed (blank where a notebook did not split it); memory in GiB"]
    if any(row["smoke"] for row in rows):
        lines.append("- SMOKE RUN: steps and lengths were capped; these figures check the code, they measure nothing")
    if failures:
        lines += ["", "## Notebooks that did not finish", ""]
        lines += [f"- `{name}`: {error}" for name, error in failures.items()]
    for notebook, measured in table.groupby("notebook", sort=False):
        lines += ["", f"## {notebook}", "", markdown_table(measured, RESULTS_FILE_COLUMNS)]
    split = next((row for row in reversed(rows) if row.get("stages_s")), None)
    if split:
        lines += ["", f"## Where the time went: {split['notebook']}, {split['configuration']}", "",
                  "| stage | seconds | share |", "|---|---|---|"]
        total = sum(split["stages_s"].values())
        lines += [f"| {stage} | {seconds:.4f} | {seconds / total:.1%} |" for stage, seconds in split["stages_s"].items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute the course's notebooks headless and summarise the results.")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<date-time>)")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 00 08")
    parser.add_argument("--cell-timeout", type=int, default=DEFAULT_CELL_TIMEOUT_S, metavar="SECONDS",
                        help=f"stop a cell that runs longer and go on with the next notebook "
                             f"(default {DEFAULT_CELL_TIMEOUT_S}; 0: no limit)")
    parser.add_argument("--results-dir", type=Path, metavar="DIR",
                        help="also write DIR/<device>-<date>.md, the run's measurements to commit (e.g. results)")
    args = parser.parse_args(argv)

    from helpers.loading import resolve_checkpoint

    notebooks = course_notebooks(args.only)
    if not notebooks:
        print(f"error: no notebook's name starts with {' or '.join(args.only)}: give prefixes such as 00 08",
              file=sys.stderr)
        return 2
    asked_for = settings.model_id()  # as the reader named it ("full-size"), before it becomes a folder
    try:
        model = resolve_checkpoint(None)
    except CourseError as error:
        print(f"Cannot run the course: {error}", file=sys.stderr)
        return 2
    run_dir = (args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ[settings.MODEL_ENV] = model  # every notebook's kernel inherits the resolved checkpoint
    os.environ[settings.RESULTS_ENV] = str(run_dir / "results.jsonl")
    print(f"Model: {model}\n{settings.smoke_banner()}\nRun folder: {run_dir}")

    try:
        failures = run_notebooks(notebooks, run_dir, args.cell_timeout or None)
    except StoppedFromOutside as stopped:
        print(f"Summary: {write_summary(run_dir, stopped.failures)}")
        [(name, what)] = list(stopped.failures.items())[-1:]
        print(f"{name}: {what}; what ran is saved in {run_dir}", file=sys.stderr)
        return 128 + signal.Signals[stopped.signal_name].value  # 143 for SIGTERM, 130 for SIGINT, as a shell says
    print(f"Summary: {write_summary(run_dir, failures)}")
    if args.results_dir:
        command = "python -m helpers.run_course " + " ".join(argv if argv is not None else sys.argv[1:])
        written = write_results_file(run_dir, args.results_dir, failures, f"AUDIOLDM2_MODEL={asked_for} {command}")
        print(f"Results file: {written or 'none (nothing was measured)'}")
    for name, error in failures.items():
        print(f"{name} failed: {error} (open {run_dir / name} to see where)", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
