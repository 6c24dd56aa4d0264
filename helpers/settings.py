"""The course's settings, read from environment variables, in one place.

Why environment variables: the same notebooks run on Colab with the real checkpoint, in CI on a tiny
random one, and in a quick "smoke" run on a CPU. Nothing in a notebook changes between those: only
these variables do.

* ``AUDIOLDM2_MODEL``: which checkpoint to load: a hub id, a local folder, or ``tiny`` / ``full-size``
  for a random-weights checkpoint the course builds itself (offline).
* ``AUDIOLDM2_SMOKE=1``: cap steps and audio lengths so the whole course runs on a CPU in minutes; a check
  that the code runs, not a measurement.
* ``AUDIOLDM2_FULL=1``: on a machine without a CUDA GPU, keep the blog's steps and lengths (hours per notebook)
  instead of the CPU profile (see :func:`cpu_profile`).
* ``AUDIOLDM2_RESULTS``: the results log every notebook appends its measurements to.
* ``AUDIOLDM2_COMPILE_CACHE``: the folder ``torch.compile`` keeps what it compiled in, shared by every notebook and
  command (:mod:`helpers.compile_cache`); default ``compile`` in the course's cache folder (``$AUDIOLDM2_CACHE``, else
  ``~/.cache/audioldm2-faster``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# Where this course lives on GitHub. The notebooks' badges and install cells, pyproject.toml and the README
# spell it out too: `python -m helpers.repository OWNER/NAME` changes them all, and a test checks they agree.
REPOSITORY = "audioldm2-faster/audioldm2-faster"

MODEL_ENV = "AUDIOLDM2_MODEL"
SMOKE_ENV = "AUDIOLDM2_SMOKE"
RESULTS_ENV = "AUDIOLDM2_RESULTS"
COMPILE_CACHE_ENV = "AUDIOLDM2_COMPILE_CACHE"
CACHE_ENV = "AUDIOLDM2_CACHE"  # the course's cache folder: built checkpoints, the compile cache
# For the course's own tests only: lets float16 and bfloat16 run on a CPU, so that CI, which has no GPU, runs
# the notebooks' half-precision code. Slow kernels, right results; a reader's CPU is refused (loading.check_dtype).
TESTS_HALF_ON_CPU_ENV = "AUDIOLDM2_TESTS_HALF_ON_CPU"

DEFAULT_MODEL_ID = "cvssp/audioldm2"
HUB_MODEL_IDS = ("cvssp/audioldm2", "cvssp/audioldm2-large", "cvssp/audioldm2-music")
# Names for the random-weights checkpoints the course builds itself: name -> (kind, variant).
RANDOM_CHECKPOINTS = {
    "tiny": ("tiny", "base"),
    "full-size": ("full-size", "base"),
    "full-size-large": ("full-size", "large"),
    "full-size-music": ("full-size", "music"),
}

# The blog's prompt, negative prompt and seed, used throughout so that every notebook's clip can be compared, with
# each other and (on a CUDA GPU, where the generator draws the blog's numbers) with the blog's.
PROMPT = "The sound of Brazilian samba drums with waves gently crashing in the background"
NEGATIVE_PROMPT = "Low quality, average quality."
SEED = 0
AUDIO_LENGTH_S = 10.24  # 1024 mel frames: the length the model was trained on

FULL_ENV = "AUDIOLDM2_FULL"
# The CPU profile: clips this many times shorter, and from 10 steps up this many times fewer steps.
CPU_AUDIO_DIVISOR = 4
CPU_STEPS_DIVISOR = 5

# In smoke mode: at most this many denoising steps and seconds of audio per generation.
SMOKE_MAX_STEPS = 2
SMOKE_MAX_AUDIO_S = 2.56


def model_id() -> str:
    """The checkpoint the course loads: ``$AUDIOLDM2_MODEL`` if set, else ``cvssp/audioldm2``."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL_ID


def tests_allow_half_on_cpu() -> bool:
    """True only where the course's tests set ``AUDIOLDM2_TESTS_HALF_ON_CPU=1``."""
    return os.environ.get(TESTS_HALF_ON_CPU_ENV, "") == "1"


def smoke_mode() -> bool:
    """True when ``AUDIOLDM2_SMOKE`` is set to 1 (or true/yes): a quick run, not a measurement."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def cpu_profile() -> bool:
    """True without a CUDA GPU (and not in smoke mode, nor with ``AUDIOLDM2_FULL=1``): measure at smaller settings.

    At the blog's settings a CPU takes most of an hour per notebook with the real model. The CPU profile makes
    every clip 4 times shorter and every step count of 10 or more 5 times smaller for the *timed* runs (DDIM
    200 -> 40, DPM-Solver++ 20 -> 4: the same ratio of steps, so a speed-up keeps its meaning), so that each
    notebook measures for real in minutes. A solver at 4 steps does not make the recipe's sound, though: a clip
    played as the recipe's is generated once more at the blog's count (:func:`steps_to_hear`). An Apple GPU
    counts as no CUDA GPU here: it is slower than the GPUs the blog's settings suit.
    """
    if smoke_mode() or os.environ.get(FULL_ENV, "") == "1":
        return False
    import torch

    return not torch.cuda.is_available()


def steps(wanted: int) -> int:
    """``wanted`` denoising steps; fewer in smoke mode, and in the CPU profile from 10 steps up."""
    if smoke_mode():
        return min(wanted, SMOKE_MAX_STEPS)
    if cpu_profile() and wanted >= 10:
        return max(2, round(wanted / CPU_STEPS_DIVISOR))
    return wanted


def audio_seconds(wanted: float) -> float:
    """``wanted`` seconds of audio; fewer in smoke mode and in the CPU profile."""
    if smoke_mode():
        return min(wanted, SMOKE_MAX_AUDIO_S)
    return wanted / CPU_AUDIO_DIVISOR if cpu_profile() else wanted


def steps_to_hear(wanted: int) -> int:
    """``wanted`` denoising steps for a clip to listen to as the recipe's sound: the blog's count, fewer only in
    smoke mode.

    The CPU profile times fewer steps (:func:`steps`), which keeps a speed-up's meaning but not the sound: DPM-Solver++
    at 4 steps is not DPM-Solver++ at 20. So a listening cell makes its clip once more at this count.
    """
    return min(wanted, SMOKE_MAX_STEPS) if smoke_mode() else wanted


def steps_label(wanted: int, run: int | None = None, *, whose: str = "the blog") -> str:
    """``"20 steps"`` when this run takes the blog's count, else ``"4 steps (the blog: 20)"``: a reader on a CPU
    or in a smoke run always sees both numbers. ``run``: the steps this run takes, if not :func:`steps` of
    ``wanted`` (e.g. :func:`steps_to_hear`). ``whose``: whose count ``wanted`` is, where the blog has none
    (``"a full run"`` for rung 8's 10 steps)."""
    run = steps(wanted) if run is None else run
    return f"{run} steps" if run == wanted else f"{run} steps ({whose}: {wanted})"


def seconds_label(wanted: float) -> str:
    """``"10.24 s"`` when this run makes the blog's length, else ``"2.56 s (the blog: 10.24 s)"``."""
    run = audio_seconds(wanted)
    return f"{run:g} s" if run == wanted else f"{run:g} s (the blog: {wanted:g} s)"


def repeats(wanted: int) -> int:
    """How many timed runs: ``wanted``, or 1 in smoke mode."""
    return 1 if smoke_mode() else wanted


def results_path() -> Path:
    """The results log: ``$AUDIOLDM2_RESULTS``, else ``audioldm2_results.jsonl`` in the working folder."""
    return Path(os.environ.get(RESULTS_ENV) or "audioldm2_results.jsonl")


def compile_cache_folder() -> Path:
    """Where ``torch.compile`` keeps what it compiled: ``$AUDIOLDM2_COMPILE_CACHE``, else ``compile`` in the course's
    cache folder (``$AUDIOLDM2_CACHE``, else ``~/.cache/audioldm2-faster``): a folder that outlives the process and
    the machine's /tmp, where torch keeps it by default."""
    if folder := os.environ.get(COMPILE_CACHE_ENV):
        return Path(folder).expanduser()
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "audioldm2-faster").expanduser() / "compile"


def smoke_banner() -> str:
    """A line every notebook prints, so that nobody mistakes a smoke run for a measurement."""
    if cpu_profile():
        return (f"CPU PROFILE (no CUDA GPU): clips {CPU_AUDIO_DIVISOR}x shorter and, in the timed runs, "
                f"{CPU_STEPS_DIVISOR}x fewer steps than the blog's (from 10 steps up), so that this notebook measures "
                "in minutes; the ratios it compares are kept, and every count printed names the blog's. A clip played "
                "as the recipe's sound is made once more at the blog's step count. "
                f"{FULL_ENV}=1 restores the blog's settings (hours on a CPU).")
    if not smoke_mode():
        return "Full run: steps and audio lengths as the text says."
    return (
        f"SMOKE MODE ({SMOKE_ENV}=1): at most {SMOKE_MAX_STEPS} steps and {SMOKE_MAX_AUDIO_S} s of audio per "
        "generation, one timed run. The numbers below check that the code runs; they measure nothing."
    )


@dataclass(frozen=True)
class TimedRuns:
    """How many calls one measurement makes: ``warmup`` calls timed apart, then ``repeats`` for the median, and why
    (one line a notebook prints, so that a reader sees what this device does)."""

    warmup: int
    repeats: int
    why: str

    def as_kwargs(self) -> dict[str, int]:
        """``warmup=`` and ``repeats=`` for :func:`helpers.measure`."""
        return {"warmup": self.warmup, "repeats": self.repeats}

    def __str__(self) -> str:
        runs = f"{self.repeats} timed run" + ("s" if self.repeats != 1 else "")
        calls = f"{self.warmup} warm-up call" + ("s" if self.warmup != 1 else "")
        return f"{runs} after {calls}: {self.why}"


def ladder_runs(*, fresh_pipeline: bool = False, profile: bool | None = None) -> TimedRuns:
    """The warm-up calls and timed runs of one rung of notebook 08's ladder (``profile``: :func:`cpu_profile`'s answer,
    asked when None).

    On a GPU every rung has a warm-up call (compilation, autotuning, lazy kernel loading) and 3 timed runs. In the
    CPU profile a pipeline that has already run has nothing left to warm up, so only a freshly loaded one gets a
    warm-up call; and each rung takes 2 timed runs, not 3: the ladder measures its first rung a second time
    instead (baseline, changes, baseline again), which says more about this machine's noise than a third run of
    each rung, and keeps the ladder within 10 minutes.
    """
    if not (cpu_profile() if profile is None else profile):
        return TimedRuns(1, repeats(3), "each rung's first call (compilation, autotuning, lazy kernel loading) is "
                                        "timed apart")
    if fresh_pipeline:
        return TimedRuns(1, repeats(2), "a freshly loaded pipeline's first call is timed apart (CPU profile)")
    return TimedRuns(0, repeats(2), "a CPU has nothing to warm up once the pipeline has run, and the first rung "
                                    "is measured twice instead of each rung three times (CPU profile)")


def sweep_runs(*, profile: bool | None = None) -> TimedRuns:
    """The calls of each point of a sweep of step counts (notebooks 06 and 10) on a pipeline that has already run.

    On a GPU a warm-up call and 3 timed runs, as every measurement. In the CPU profile each count is timed once with
    no warm-up: the pipeline is warm and nothing compiles, and 4 generations per point would add minutes; the
    sweep's curve shows the time growing by the cost of a step, which one run shows too.
    """
    if not (cpu_profile() if profile is None else profile):
        return TimedRuns(1, repeats(3), "each point as every measurement")
    return TimedRuns(0, 1, "each count timed once, the pipeline already warm (CPU profile)")


def sound_columns_note(wanted: int = 20) -> str:
    """One line on what a table's sound columns were made from: the timed clips, at :func:`steps` of ``wanted``.

    In the CPU profile that count (4 for the blog's 20) is a solver's sketch of the clip, not the recipe's sound, and
    a listening cell makes the clip again at :func:`steps_to_hear`; elsewhere the timed clips are the ones heard.
    """
    timed, heard = steps(wanted), steps_to_hear(wanted)
    if timed == heard:
        return f"the sound columns: the timed clips, at {steps_label(wanted)}, the count a listener hears"
    return (f"the sound columns: the timed clips, at {steps_label(wanted)}, fewer in a sweep: a solver's sketch, "
            f"not the recipe's sound; the listening cell plays that, at {steps_label(wanted, heard)}")


BLOG_SOLVER_STEPS = 20  # the blog's DPM-Solver++ step count


class StepSweep(NamedTuple):
    """The step counts a sweep runs, each with the blog's count it stands for, and how each is timed."""

    counts: dict[int, int]  # steps run -> the count asked for (the blog's), sorted by steps run
    warmup: int
    repeats: int
    reason: str  # one line: why these counts and these repeats here

    def label(self, run: int) -> str:
        """``"10 steps"``, or ``"2 steps (the blog: 20)"`` where this run takes fewer."""
        return steps_label(self.counts[run], run)


def step_sweep(wanted: list[int], blog: int = BLOG_SOLVER_STEPS) -> StepSweep:
    """A sweep of step counts to time *and* hear (notebook 06): each at its own count (:func:`steps_to_hear`).

    A sweep is for listening, so the CPU profile keeps every count (a solver at 4 steps is no recipe) and times each
    once, with no warm-up: four generations of each would add minutes, and one shows time growing by the per-step
    cost. Elsewhere each count has a warm-up and :func:`repeats` timed runs. Smoke mode caps every count, so several
    become one: that one keeps ``blog``'s label where ``blog`` is among them, else the smallest count's.
    """
    counts: dict[int, int] = {}
    for n in sorted(wanted, reverse=True):
        counts[steps_to_hear(n)] = n
    if blog in wanted:
        counts[steps_to_hear(blog)] = blog
    counts = dict(sorted(counts.items()))
    runs = sweep_runs()  # one rule for every sweep of the course (06 and 10)
    return StepSweep(counts, runs.warmup, runs.repeats, str(runs))


def batch_sizes(device) -> tuple[list[int], str]:
    """The batch sizes notebook 11 measures on ``device`` (a ``torch.device`` or its name), and one line on why.

    Why these: throughput grows with the batch until the device is busy. A CUDA GPU can have room at one clip a
    call, so it tries up to 8; a CPU is busy from the first clip and each size costs minutes there, so three show
    its curve; a smoke run tries two, only to check that the code runs.
    """
    import torch

    kind = torch.device(device).type
    if smoke_mode():
        return [1, 2], "a smoke run: two sizes, only to check that the code runs"
    if kind == "cuda":
        return [1, 2, 4, 8], "a CUDA GPU: 1 to 8 clips a call (exercise 1 tries more)"
    if kind == "mps":
        return [1, 2, 4], "an Apple GPU: 1, 2 and 4 clips a call (it shares its memory with the system)"
    return [1, 2, 4], "a CPU, busy from the first clip: 1, 2 and 4 clips a call show its curve in minutes"
