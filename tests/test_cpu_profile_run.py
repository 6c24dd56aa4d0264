"""The CPU track keeps its lessons: the notebooks run headless in the CPU profile, every step count they print that
differs from the blog's names the blog's, and no listening cell plays a solver below 10 steps as the recipe's sound.

A scan of the executed notebooks of the suite's one course run (the ``course_run`` fixture in conftest.py: the course
runner on the tiny checkpoint, the CPU profile on, no smoke mode, no GPU, half precision only where the CPU computes
it). The tiny model takes a fraction of a second per step, so its timings measure nothing, but the step counts,
labels and players are the CPU profile's own.
"""

import html
import json
import re
from pathlib import Path

import nbformat
import pytest

from helpers import settings

ROOT = Path(__file__).resolve().parent.parent
# The notebooks whose CPU track this scan holds: every one of the course's, 00 to 11.
SCANNED = ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"]
# "40 steps", "4-step", "40 DDIM steps", "4 denoising steps", "DDIM 40", "DPM-Solver++ 4": a step count printed.
STEP_COUNT = re.compile(r"(?<![\d.])(?P<a>\d+)[ -](?:DDIM |denoising |DPM-Solver\+\+ )?steps?\b"
                        r"|\b(?:DDIM|DPM-Solver\+\+|DPMSolverMultistep),? (?P<b>\d+)\b(?![ .]\d| x)")
SOLVER_FLOOR = 10  # below this many steps, DPM-Solver++ is a sketch of the clip, not the recipe's sound
LENGTH = re.compile(r"(?<![\d.])\d+(?:\.\d+)? s\b")  # "2.56 s", "10.24 s (the blog)"
# A measured speed compared, as h.timing.speedup_text writes it: "1.85x" or "within noise".
COMPARED = re.compile(r"(?<![\d.])\d+\.\d\dx\b|within noise")
NOT_MEASURED_HERE = re.compile(r"blog|predicted|Colab", re.IGNORECASE)  # quoted or predicted ratios, not compared runs


def cpu_profile_counts() -> set[int]:
    """The step counts the CPU profile times instead of the blog's 200 and 20."""
    return {round(wanted / settings.CPU_STEPS_DIVISOR) for wanted in (200, 20)}


def output_texts(cell) -> list[str]:
    """What a reader sees of each output of ``cell``, as text (HTML tables and players' labels included)."""
    texts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            texts.append(output.text)
        elif output.output_type == "error":
            texts.append(f"{output.ename}: {output.evalue}")
        else:
            data = output.get("data", {})
            if "text/html" in data:
                texts.append(html.unescape(re.sub(r"<[^>]+>", " ", data["text/html"])))
            elif "text/plain" in data:
                texts.append(data["text/plain"])
    return texts


def plays_audio(cell) -> bool:
    return any("<audio" in output.get("data", {}).get("text/html", "") for output in cell.get("outputs", []))


def step_counts(text: str) -> list[tuple[int, str]]:
    """(count, what follows it) for every step count in ``text``."""
    return [(int(match.group("a") or match.group("b")), text[match.end():match.end() + 40])
            for match in STEP_COUNT.finditer(text)]


def unlabelled_counts(notebook, profile_counts: set[int]) -> list[str]:
    """Printed step counts of the CPU profile that do not name the blog's count next to them."""
    found = []
    for cell in notebook.cells:
        for text in output_texts(cell) if cell.cell_type == "code" else []:
            for line in text.splitlines():
                for count, after in step_counts(line):
                    if count in profile_counts and "(the blog: " not in after[:25]:
                        found.append(f"{count}: {line.strip()[:160]}")
    return found


def listening_problems(notebook) -> list[str]:
    """Listening cells that play a solver below SOLVER_FLOOR steps, or do not say how many steps they play."""
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not plays_audio(cell):
            continue
        counts = [count for text in output_texts(cell) for count, _ in step_counts(text)]
        if not counts:
            problems.append(f"cell {index} plays clips without saying how many steps made them")
        problems += [f"cell {index} plays a clip of {count} steps" for count in counts if count < SOLVER_FLOOR]
    return problems


def unlabelled_rows(rows: list[dict]) -> list[str]:
    """The results log's timed rows whose label does not name both a step count and a clip length."""
    return [row["configuration"] for row in rows
            if not (step_counts(row["configuration"]) and LENGTH.search(row["configuration"]))]


def comparisons_without_a_floor(notebook) -> list[str]:
    """Cells that compare measured speeds ("1.85x", "within noise") without saying their noise floor."""
    found = []
    for index, cell in enumerate(notebook.cells):
        text = "\n".join(output_texts(cell)) if cell.cell_type == "code" else ""
        compared = [line for line in text.splitlines() if COMPARED.search(line) and not NOT_MEASURED_HERE.search(line)]
        if compared and "noise floor" not in text:
            found.append(f"cell {index}: {compared[0].strip()[:160]}")
    return found


def test_the_scan_finds_what_it_should():
    profile = {40, 4}
    assert [count for count, _ in step_counts("DDIM, 40 steps (the blog: 200), 2.56 s")] == [40]
    assert [count for count, _ in step_counts("a 4-step clip; 40 DDIM steps; DPM-Solver++ 4, SDPA")] == [4, 40, 4]
    assert step_counts("4 x 2.56 s, the 2nd step, 10.24 s") == []
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output("stream", text="DDIM 40 steps (the blog: 200)\nDPM-Solver++ 4 steps\n")])])
    assert unlabelled_counts(notebook, profile) == ["4: DPM-Solver++ 4 steps"]
    player = nbformat.v4.new_output("display_data", data={"text/html": "<b>DPM-Solver++, 4 steps</b><audio></audio>"})
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[player])])
    assert listening_problems(notebook) == ["cell 0 plays a clip of 4 steps"]
    player.data["text/html"] = "<b>no count</b><audio></audio>"
    assert listening_problems(notebook) == ["cell 0 plays clips without saying how many steps made them"]
    rows = [{"configuration": "float32, DDIM 40 steps (the blog: 200), 2.56 s (the blog: 10.24 s)"},
            {"configuration": "batch of 4"}, {"configuration": "DDIM 40 steps"}]
    assert unlabelled_rows(rows) == ["batch of 4", "DDIM 40 steps"]
    table = nbformat.v4.new_output("stream", text="float16  1.2 s  1.85x\nthe blog: 1.33x\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[table])])
    assert comparisons_without_a_floor(notebook) == ["cell 0: float16  1.2 s  1.85x"]
    table.text += "noise floor: 0.1 s (float32 measured twice)\n"
    assert comparisons_without_a_floor(notebook) == []


@pytest.fixture(scope="module")
def cpu_profile_run(course_run) -> Path:
    """The scanned notebooks, as the suite's one course run executed them (CPU profile, tiny checkpoint)."""
    assert course_run.done.returncode == 0, (course_run.done.stdout + course_run.done.stderr)[-3000:]
    return course_run.folder


def test_the_scan_holds_every_notebook():
    assert SCANNED == sorted(path.name[:2] for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _executed(run_dir: Path, number: str):
    [path] = run_dir.glob(f"{number}_*.ipynb")
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("number", SCANNED)
def test_every_notebook_ran_in_the_cpu_profile_without_an_error(cpu_profile_run, number):
    notebook = _executed(cpu_profile_run, number)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output.ename for output in outputs if output.output_type == "error"]
    assert any("CPU PROFILE" in text for cell in notebook.cells if cell.cell_type == "code"
               for text in output_texts(cell)), "h.setup's banner: the run was not in the CPU profile"


@pytest.mark.parametrize("number", SCANNED)
def test_every_printed_step_count_of_the_cpu_profile_names_the_blogs(cpu_profile_run, number):
    assert unlabelled_counts(_executed(cpu_profile_run, number), cpu_profile_counts()) == []


@pytest.mark.parametrize("number", SCANNED)
def test_no_listening_cell_plays_a_solver_below_10_steps(cpu_profile_run, number):
    notebook = _executed(cpu_profile_run, number)
    assert any(plays_audio(cell) for cell in notebook.cells if cell.cell_type == "code"), "a notebook to listen to"
    assert listening_problems(notebook) == []


def test_every_timed_row_of_the_course_run_names_its_steps_and_length(cpu_profile_run):
    rows = [json.loads(line) for line in (cpu_profile_run / "results.jsonl").read_text().splitlines() if line.strip()]
    assert rows, "the course run logged no measurement"
    assert unlabelled_rows(rows) == []


@pytest.mark.parametrize("number", SCANNED)
def test_every_comparison_of_speeds_says_its_noise_floor(cpu_profile_run, number):
    assert comparisons_without_a_floor(_executed(cpu_profile_run, number)) == []
