"""Every notebook read as a learner reads it: the blog's prompt and calls, no plumbing before the first sound, no
branch on the device or the profile outside the lessons that teach one, the blog's figures beside its own settings.

These read the committed notebooks (their sources), so they run in seconds; what the notebooks print (steps and
length in every timed row, a noise floor under every comparison of speeds) is read from the course run in
tests/test_cpu_profile_run.py.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from helpers import settings

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [path.stem for path in NOTEBOOKS]

BLOG_PROMPT = "The sound of Brazilian samba drums with waves gently crashing in the background"
BLOG_NEGATIVE_PROMPT = "Low quality, average quality."
FIRST_SOUND_WITHIN = 60  # lines of code, the Colab install cell left out

# The lessons whose subject is a difference between devices, and how many of their code cells may branch on the
# device or the profile. Everywhere else the helpers decide, and the cell prints what this device does.
BRANCHING_LESSONS = {
    "01_baseline": (2, "timing: a GPU runs asynchronously and has its own clock (CUDA events); a CPU has neither"),
    "04_half_precision": (1, "which half precision each device computes natively: its capabilities, printed"),
    "05_torch_compile": (4, "where compiling cannot run, and what it compiles to on each device"),
}
# Words in an `if` that mean a branch on the device or on the profile (the CPU profile, smoke mode).
DEVICE_OR_PROFILE = re.compile(r"\bdevice\b|\.type\b|\bon_(?:cuda|gpu)\b|\bcpu_profile\b|\bsmoke_mode\b|"
                               r"\bis_available\b|[\"'](?:cuda|cpu|mps)[\"']")
PLAYS = re.compile(r"\bh\.(?:play|compare|listening\.choose|listening\.play|listening\.compare)\(|\bAudio\(")
# The blog's own calls, where each lesson makes its change: (what, pattern over the notebook's code).
BLOG_CALL = ("the pipeline's own call with the blog's seeded generator: pipe(prompt, ..., generator=generator)",
             r"\bpipe\(\s*(?:prompt|h\.settings\.PROMPT)\b[^\n]*(?:\n[^\n]*){0,4}?generator=")
PROGRESS_BAR = ("the pipeline's progress bar, with its it/s, as the blog reads it",
                r"pipe\.set_progress_bar_config\(disable=False\)")
BLOG_CALLS = {
    "01_baseline": [BLOG_CALL, PROGRESS_BAR],
    "02_negative_prompt": [("the blog's call with its negative prompt",
                            r"\bpipe\(\s*(?:prompt|h\.settings\.PROMPT)\b[^\n]*(?:\n[^\n]*){0,4}?negative_prompt=")],
    "03_sdpa": [BLOG_CALL, PROGRESS_BAR],
    "04_half_precision": [BLOG_CALL, PROGRESS_BAR],
    "05_torch_compile": [BLOG_CALL, PROGRESS_BAR,
                         ("the blog's compile line", r"pipe\.unet = torch\.compile\(pipe\.unet, mode=\"reduce-overhead\", "
                                                     r"fullgraph=True\)")],
    "06_scheduler": [BLOG_CALL, PROGRESS_BAR,
                     ("the blog's scheduler line",
                      r"pipe\.scheduler = DPMSolverMultistepScheduler\.from_config\(pipe\.scheduler\.config\)")],
}
# The blog's figures that are easy to set beside the wrong run, and the words a sentence with one must hold.
BLOG_FIGURES = {
    "13 s": (re.compile(r"no negative prompt|without (?:the |a )?negative prompt|first call|first run"),
             "the blog's 13 s has no negative prompt (its first call)"),
    "12 s": (re.compile(r"negative prompt"), "the blog's 12 s is float32 with the negative prompt"),
}


def notebook(name: str) -> dict:
    return json.loads((NOTEBOOKS[NAMES.index(name)]).read_text())


def code_cells(nb: dict) -> list[str]:
    """The code a learner reads, the Colab install cell left out."""
    return ["".join(cell["source"]) for cell in nb["cells"]
            if cell["cell_type"] == "code" and "google.colab" not in "".join(cell["source"])]


def code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def python(source: str) -> str:
    """A cell's source as Python: IPython's magics and shell lines become comments."""
    return "\n".join("#" + line if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def lines_to_first_sound(nb: dict) -> int | None:
    total = 0
    for source in code_cells(nb):
        total += code_lines(source)
        if PLAYS.search(source):
            return total
    return None


def device_branches(source: str) -> list[str]:
    """The conditions in ``source`` (an ``if``, a conditional expression) that read the device or the profile."""
    if source.lstrip().startswith("#@save"):  # the helpers' own code, written out where a lesson teaches it
        return []
    found = []
    for node in ast.walk(ast.parse(python(source))):
        if isinstance(node, (ast.If, ast.IfExp)):
            condition = ast.unparse(node.test)
            if DEVICE_OR_PROFILE.search(condition):
                found.append(condition)
    return found


def sentences(nb: dict) -> list[str]:
    text = "\n\n".join("".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "markdown")
    return [" ".join(s.split()) for s in re.split(r"(?<=[.!?:])\s+|\n\n", text)]


def test_the_scans_find_what_they_should():
    assert device_branches('if device.type == "cuda":\n    pass') == ["device.type == 'cuda'"]
    assert device_branches("x = 1 if h.settings.cpu_profile() else 2") == ["h.settings.cpu_profile()"]
    assert device_branches("if half is not None:\n    pass") == []  # a helper decided; the cell follows
    assert device_branches("#@save helpers/x.py\nif device.type == 'cpu':\n    pass") == []
    assert device_branches("%pip install x\nif on_cuda:\n    pass") == ["on_cuda"]
    nb = {"cells": [{"cell_type": "code", "source": ["import sys\nif 'google.colab' in sys.modules:\n    pass"]},
                    {"cell_type": "code", "source": ["a = 1\n\n# a comment\nb = 2"]},
                    {"cell_type": "code", "source": ["h.play(audio)"]}]}
    assert lines_to_first_sound(nb) == 3
    assert re.search(BLOG_CALL[1], "audio = pipe(\n    prompt,\n    negative_prompt=n,\n    generator=generator,\n)")
    assert not re.search(BLOG_CALL[1], "audio = h.generate(pipe, num_inference_steps=2)")


def test_the_prompts_are_the_blogs():
    assert settings.PROMPT == BLOG_PROMPT
    assert settings.NEGATIVE_PROMPT == BLOG_NEGATIVE_PROMPT


@pytest.mark.parametrize("name", NAMES)
def test_no_prompt_but_the_blogs(name):
    nb = notebook(name)
    text = json.dumps(nb["cells"]).lower()
    assert "techno" not in text, f"{name} still names the old prompt"
    for source in code_cells(nb):
        for node in ast.walk(ast.parse(python(source))):
            if isinstance(node, ast.keyword) and node.arg in ("prompt", "negative_prompt") \
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                assert node.value.value in (BLOG_PROMPT, BLOG_NEGATIVE_PROMPT, ""), \
                    f"{name} generates from {node.value.value!r}, not the blog's prompt"


@pytest.mark.parametrize("name", NAMES)
def test_the_first_sound_comes_within_60_lines_of_code(name):
    lines = lines_to_first_sound(notebook(name))
    assert lines is not None, f"{name} plays no sound"
    assert lines <= FIRST_SOUND_WITHIN, f"{name} reaches its first sound after {lines} lines of code"


@pytest.mark.parametrize("name", NAMES)
def test_no_cell_branches_on_the_device_or_profile_outside_the_lessons_about_it(name):
    branching = {i: found for i, source in enumerate(code_cells(notebook(name)))
                 if (found := device_branches(source))}
    allowed, why = BRANCHING_LESSONS.get(name, (0, ""))
    assert len(branching) <= allowed, (
        f"{name}: {len(branching)} cells branch on the device or the profile ({allowed} allowed: {why or 'none'}): "
        + "; ".join(f"cell {i}: {', '.join(found)}" for i, found in branching.items()))


@pytest.mark.parametrize("name", sorted(BLOG_CALLS))
def test_the_lesson_shows_the_blogs_own_call(name):
    code = "\n".join(code_cells(notebook(name)))
    for what, pattern in BLOG_CALLS[name]:
        assert re.search(pattern, code), f"{name} does not show {what}"


@pytest.mark.parametrize("name", NAMES)
def test_the_blogs_figures_sit_beside_its_own_settings(name):
    for sentence in sentences(notebook(name)):
        if "blog" not in sentence.lower():
            continue
        for figure, (words, why) in BLOG_FIGURES.items():
            if re.search(rf"(?<![\d.]){re.escape(figure)}\b", sentence):
                assert words.search(sentence), f"{name}: {why}: {sentence!r}"
