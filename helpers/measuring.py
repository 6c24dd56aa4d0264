"""One way to measure a generation: its time, its peak memory, and a line in the results log.

Notebook 01 shows :func:`measure` and explains each of its steps; every later notebook calls it, so that
every figure of the course is taken the same way and lands in the same log, with the device, the dtype and
the library versions next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from helpers import settings
from helpers.generating import generate
from helpers.memory import PeakMemory, peak_memory
from helpers.results import record
from helpers.stages import StageTimes, time_stages
from helpers.timing import Timing, time_runs

LONG_RUN_S = 300  # past five minutes, the course offers a quicker way to run the code


@dataclass
class Measurement:
    """What :func:`measure` measured, the clips it made, and the row it wrote to the results log."""

    timing: Timing
    memory: PeakMemory
    audios: np.ndarray  # the clips of the last timed call, shape (waveforms, samples)
    first_audios: np.ndarray  # the clips of the first (warm-up) call: the same seed, so the same clips
    row: dict
    stages: StageTimes | None = None  # where one more generation's time went, if measure() was asked to split

    @property
    def audio(self) -> np.ndarray:
        """The first clip of the last call: what to listen to."""
        return self.audios[0]


def measure(
    pipe,
    configuration: str,
    *,
    notebook: str,
    device: torch.device | str,
    num_inference_steps: int,
    audio_length_in_s: float,
    warmup: int = 1,
    repeats: int = 3,
    split_stages: bool = False,
    **generate_kwargs,
) -> Measurement:
    """Time ``generate(pipe, ...)`` and its peak memory, append both to the results log, print them.

    ``warmup`` calls are timed apart (one-off costs, or torch.compile's compilation), then ``repeats`` calls
    give the median (one in smoke mode). ``configuration`` names the setting in the log; ``notebook`` says
    which notebook measured it. ``split_stages=True`` adds one more generation, with every stage timed
    (:func:`~helpers.stages.time_stages`). Every other argument goes to :func:`~helpers.generating.generate`.
    """
    clips = {}

    def one_generation() -> None:
        audios = generate(pipe, num_inference_steps=num_inference_steps, audio_length_in_s=audio_length_in_s,
                          **generate_kwargs)
        clips.setdefault("first", audios)
        clips["last"] = audios

    with peak_memory(device) as memory:
        timing = time_runs(one_generation, device=device, label=configuration, warmup=warmup,
                           repeats=settings.repeats(repeats))
    timing.audio_seconds = audio_length_in_s * len(clips["last"])  # every clip of the call, for the real-time factor
    stages = time_stages(pipe, one_generation, device, steps=num_inference_steps) if split_stages else None
    row = record(notebook, configuration, timing, memory, pipe=pipe, steps=num_inference_steps, stages=stages)
    print(timing)
    print(memory)
    if stages:
        print(stages)
    return Measurement(timing, memory, audios=clips["last"], first_audios=clips["first"], row=row, stages=stages)


NOT_MEASURED = "smoke run: not measured"


def estimate(value: float, unit: str = "s", digits: int = 1) -> str:
    """``"about 12.2 s"``; in smoke mode ``"smoke run: not measured"``.

    A smoke run caps steps and lengths: an estimate or a one-off timing from it reads like a measurement of what
    the text describes, and is not one. Measured medians keep their figures (the banner says what they are).
    """
    return NOT_MEASURED if settings.smoke_mode() else f"about {value:.{digits}f} {unit}"


def say_how_long(what: str, seconds: float) -> None:
    """Print how long ``what`` should take here, and how to make a quick run of the code when that is long."""
    if settings.smoke_mode():
        print(f"{what}: {NOT_MEASURED}.")
        return
    print(f"{what}: about {seconds / 60:.1f} min here.")
    if seconds > LONG_RUN_S:
        print(f"That is long. For a quick run of the code: set {settings.SMOKE_ENV}=1 before starting Jupyter "
              "(the numbers then measure nothing), or run on a GPU (Colab: Runtime > Change runtime type).")


def note_if_smoke() -> None:
    """In smoke mode, say under a comparison that its figures measure nothing."""
    if settings.smoke_mode():
        print("Smoke mode: few steps, short clips, one timed run: these figures check that the code runs; "
              "they measure nothing.")
