"""Timing that a GPU cannot fool.

A CUDA call returns before the GPU has finished: ``time.time()`` around it measures how fast Python
*queued* the work. So each timed run is bracketed by CUDA events and followed by a synchronise, as the
PyTorch tutorials do. The first calls are timed apart (warm-up: CUDA context, cuDNN autotuning,
``torch.compile``'s compilation) and reported, never mixed into the median. On a CPU (or Apple MPS)
the same function uses ``time.perf_counter`` and the device's synchronise, so the API does not change.

The clock is an argument (``clock=time.perf_counter``) so that a test can hand in a fake one and check the
arithmetic without depending on how busy the machine is.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

Clock = Callable[[], float]  # seconds, monotonic: time.perf_counter, or a fake one in tests


@dataclass
class Timing:
    """Wall-clock seconds of a few runs of the same work, with the warm-up runs kept apart."""

    label: str
    device: str
    runs_s: list[float]
    warmup_s: list[float] = field(default_factory=list)
    audio_seconds: float | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)

    @property
    def spread_s(self) -> float:
        """Slowest minus fastest timed run: a large spread means the median needs more runs."""
        return max(self.runs_s) - min(self.runs_s)

    @property
    def realtime_factor(self) -> float | None:
        """Seconds of audio per second of compute: above 1 is faster than real time."""
        return self.audio_seconds / self.median_s if self.audio_seconds else None

    def __str__(self) -> str:
        runs = f"{len(self.runs_s)} run" + ("s" if len(self.runs_s) != 1 else "")
        text = f"{self.label}: median {self.median_s:.3f} s over {runs} (spread {self.spread_s:.3f} s)"
        if self.warmup_s:
            text += f"; first call {self.warmup_s[0]:.3f} s"
        if self.realtime_factor:
            text += f"; {self.realtime_factor:.2f} s of audio per second"
        return text + f" [{self.device}]"


def synchronize(device: torch.device | str) -> None:
    """Wait until every kernel queued on ``device`` has finished."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_once(fn: Callable[[], object], device: torch.device | str, *, clock: Clock = time.perf_counter) -> float:
    """Seconds one call of ``fn`` takes on ``device``, its queued GPU work included.

    On CUDA the GPU's own clock decides (CUDA events); elsewhere ``clock``, read after a synchronise.
    """
    device = torch.device(device)
    synchronize(device)  # nothing earlier may leak into this run
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0  # elapsed_time is in milliseconds
    start_s = clock()
    fn()
    synchronize(device)
    return clock() - start_s


@dataclass
class StepCosts:
    """A generation's time split in two: a fixed part (text encoders, GPT-2, VAE, vocoder, run once per
    clip) and the cost of one denoising step (one UNet call). Enough to predict any step count."""

    fixed_s: float
    per_step_s: float

    def clip_s(self, steps: int) -> float:
        """Predicted seconds for one clip of ``steps`` denoising steps."""
        return self.fixed_s + steps * self.per_step_s


def estimate_step_costs(generate: Callable[[int], object], device: torch.device | str, *, few: int = 1,
                        more: int = 5, clock: Clock = time.perf_counter) -> StepCosts:
    """Split ``generate(steps)`` into :class:`StepCosts` from two short runs, before a long measurement.

    One untimed call of ``few`` steps pays the one-off costs (in notebook 01, which does this by hand, the blog's
    call has paid them), then a timed call of ``few`` steps and one of ``more``; their difference over
    ``more - few`` is the cost per step, and what remains of the short call is the fixed part. One run each, so a
    rough guide, not a measurement.
    """
    generate(few)  # the first call pays one-off costs (lazy kernel loading, allocator): not used
    few_s = time_once(lambda: generate(few), device, clock=clock)
    more_s = time_once(lambda: generate(more), device, clock=clock)
    per_step_s = max((more_s - few_s) / max(more - few, 1), 1e-6)
    return StepCosts(fixed_s=max(few_s - few * per_step_s, 0.0), per_step_s=per_step_s)


def time_runs(
    fn: Callable[[], object],
    *,
    device: torch.device | str,
    label: str = "",
    warmup: int = 1,
    repeats: int = 3,
    audio_seconds: float | None = None,
    clock: Clock = time.perf_counter,
) -> Timing:
    """Call ``fn`` ``warmup`` times (timed, reported apart), then ``repeats`` times (the median).

    ``audio_seconds``: how much audio one call makes, for the real-time factor.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1: the median of no runs is undefined.")
    warmup_s = [time_once(fn, device, clock=clock) for _ in range(warmup)]
    runs_s = [time_once(fn, device, clock=clock) for _ in range(repeats)]
    return Timing(label=label, device=str(torch.device(device)), runs_s=runs_s, warmup_s=warmup_s,
                  audio_seconds=audio_seconds)


def noise_floor_s(*measurements: Timing) -> float:
    """How far apart two timings of the *same* work can land here: below this, a difference is not a finding.

    Pass the same configuration measured more than once (a repeated baseline). The floor is the largest of each
    measurement's own spread (slowest minus fastest run) and the gap between their medians: on a busy laptop, a
    GPU that changes clocks or a shared cloud machine, that is easily 5 to 10 %.
    """
    if not measurements:
        raise ValueError("noise_floor_s needs at least one timing of the baseline (two are better).")
    medians = [timing.median_s for timing in measurements]
    return max([max(medians) - min(medians)] + [timing.spread_s for timing in measurements])


def speedup_text(baseline_s: float, other_s: float, noise_s: float) -> str:
    """``"1.85x"`` (baseline over other), or ``"within noise"`` when they differ by no more than ``noise_s``."""
    if abs(baseline_s - other_s) <= noise_s:
        return "within noise"
    return f"{baseline_s / other_s:.2f}x"
