"""Run the whole course headless and summarise what it measured.

    python -m helpers.run_course                 # every notebook, with $AUDIOLDM2_MODEL (default cvssp/audioldm2)
    python -m helpers.run_course --only 00 08    # some of them
    AUDIOLDM2_MODEL=DIR AUDIOLDM2_SMOKE=1 python -m helpers.run_course   # a quick offline dry run

Each notebook is executed with nbclient into a run folder (``runs/<time>/`` by default), next to the
results log they all append to, a ``summary.md`` table and a ``ladder.png`` chart of it.

A notebook that fails (an error in a cell, a cell that runs past ``--cell-timeout``, a kernel that dies) is
reported in one line and in the summary, and the run goes on with the next notebook.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from helpers import settings
from helpers.errors import CourseError

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
# Long enough for the slowest cell of a full run on a CPU (08's first rung on the full-size model: about half
# an hour), short enough that a stuck cell cannot hold a run for ever.
DEFAULT_CELL_TIMEOUT_S = 3600
SUMMARY_COLUMNS = ["notebook", "configuration", "device_name", "dtype", "steps", "audio_seconds", "median_s",
                   "speedup", "realtime_factor", "peak_memory_gib"]
LADDER_COLUMNS = ["configuration", "dtype", "steps", "audio_seconds", "median_s", "spread_s", "speedup",
                  "realtime_factor", "peak_memory_gib"]


def course_notebooks(only: list[str] | None = None) -> list[Path]:
    """The course's notebooks in order, or those whose names start with one of ``only``."""
    paths = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [path for path in paths if any(path.name.startswith(prefix) for prefix in only)]
    return paths


def execute_notebook(source: Path, run_dir: Path, cell_timeout_s: int | None = DEFAULT_CELL_TIMEOUT_S) -> str | None:
    """Execute ``source`` with its working folder in ``run_dir``; save it there (as far as it ran).

    Returns None when every cell ran, else one line that says which cell failed and how.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = nbformat.read(source, as_version=4)
    running = {"cell": None}
    client = NotebookClient(notebook, timeout=cell_timeout_s, kernel_name="python3",
                            resources={"metadata": {"path": str(run_dir)}},
                            on_cell_start=lambda cell, cell_index: running.update(cell=cell_index))
    try:
        client.execute()
    except CellExecutionError as failure:
        last_line = re.sub(r"\x1b\[[0-9;]*m", "", str(failure)).strip().splitlines()[-1]  # no terminal colours
        return f"cell {running['cell']}: {last_line}"
    except CellTimeoutError:
        return (f"cell {running['cell']} ran for more than {cell_timeout_s} s and was stopped "
                "(--cell-timeout sets the limit)")
    except DeadKernelError:
        return (f"the kernel died in cell {running['cell']} (out of host memory is the usual cause: "
                "try AUDIOLDM2_SMOKE=1 or a machine with more memory)")
    except Exception as failure:  # the kernel would not start, a notebook that cannot be read, ...
        return (f"{type(failure).__name__}: {failure} (while cell {running['cell']} ran: "
                f"{where_raised(failure, run_dir / source.name)})")
    finally:
        nbformat.write(notebook, run_dir / source.name)
    return None


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
    """Execute each notebook in turn into ``run_dir``; returns ``{notebook name: what failed}``."""
    failures = {}
    for notebook in notebooks:
        started = time.perf_counter()
        print(f"- {notebook.name} ...", end=" ", flush=True)
        error = execute_notebook(notebook, run_dir, cell_timeout_s)
        print(f"{'FAILED' if error else 'done'} in {time.perf_counter() - started:.0f} s", flush=True)
        if error:
            failures[notebook.name] = error
    return failures


def write_summary(run_dir: Path, failures: dict[str, str] | None = None) -> Path:
    """Write ``summary.md`` (what failed, a table of every measurement) and ``ladder.png`` (the ladder's chart)."""
    import matplotlib

    matplotlib.use("Agg")
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
        ladder = table[table["notebook"] == "08_summary"]
        chart_rows = ladder if not ladder.empty else table
        table["speedup"] = float("nan")
        if not ladder.empty:
            table.loc[ladder.index, "speedup"] = ladder["median_s"].iloc[0] / ladder["median_s"]
        first = table.iloc[0]
        lines += [
            f"Model: `{first['model_id']}` ({first['checkpoint_kind']}); device: {first['device_name']}; "
            f"{first['versions']}.",
        ]
        if first["checkpoint_kind"] != "real":
            lines.append("Random weights: speed and memory only; the audio is noise."
                         + (" Tiny model: its speed says nothing about the real one." if first["checkpoint_kind"] == "tiny" else ""))
        if bool(table["smoke"].any()):
            lines.append("SMOKE RUN: steps and lengths were capped; these figures check the code, they measure nothing.")
        if not ladder.empty:
            lines += ["", "## The ladder (notebook 08: every rung in one process, same seed)", "",
                      "speedup: over the first rung; realtime_factor: seconds of audio per second of compute; "
                      "peak memory: GPU reserved on CUDA, process RSS elsewhere.", "",
                      markdown_table(table.loc[ladder.index], LADDER_COLUMNS)]
        lines += ["", "![ladder](ladder.png)", "", "## Every measurement of the run", "",
                  markdown_table(table, SUMMARY_COLUMNS), ""]
        figure = plot_speedups(list(chart_rows["configuration"]), list(chart_rows["median_s"]),
                               title=f"Median latency on {first['device_name']}"
                               + (" (smoke run: measures nothing)" if bool(table["smoke"].any()) else ""))
        figure.savefig(run_dir / "ladder.png", dpi=120)
    summary = run_dir / "summary.md"
    summary.write_text("\n".join(lines))
    return summary


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
    os.environ.setdefault("MPLBACKEND", "Agg")
    print(f"Model: {model}\n{settings.smoke_banner()}\nRun folder: {run_dir}")

    try:
        failures = run_notebooks(course_notebooks(args.only), run_dir, args.cell_timeout or None)
    except KeyboardInterrupt:
        print(f"\nInterrupted: the notebooks run so far are in {run_dir}", file=sys.stderr)
        write_summary(run_dir)
        return 130
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
