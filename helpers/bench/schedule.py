"""The schedule: what is left before the deadline, what an item will cost, and whether it still fits.

Nothing here touches a GPU, so it reads (and is tested) alone, on a fake clock.

A GPU turn is short, and a compiled UNet is what a GPU learner came for: so the compile goes first, and every
later item starts only if its estimate, with a margin, ends before the deadline. The estimates come from what
this run has measured so far, kept apart for the eager and the compiled UNet (:class:`CostModel`); before the
first measurement, only the compile has a prior (:func:`compile_prior_s`), scaled by how fast this host's CPU is
(:func:`host_yardstick_s`): a compile is Python and C++ on the host, and the same card took 80 s on one host and
138 s on another.
"""

from __future__ import annotations

import platform
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

Clock = Callable[[], float]  # monotonic seconds: time.monotonic, or a fake one in tests

MARGIN, SLACK_S = 1.25, 3.0  # an item starts only if 1.25 x its estimate, plus 3 s, is left
# The first compiled call of the full-size UNet (mode="reduce-overhead", fullgraph=True, one DPM-Solver++ 20
# clip included) took 137.6 s on the H200 host of 2026-12-04 and 79.8 s on the host of 2026-11-26.
UNET_COMPILE_PRIOR_S = 138.0
# That host's yardstick was not measured (the yardstick came after it). The reference below is this project's
# development CPU (2 x86_64 cores, AMD EPYC, 2026-12-04): a host as fast as it is assumed to compile in 138 s.
# Every run records its own yardstick beside its measured compile, so that the next GPU run can correct this.
REFERENCE_YARDSTICK_S = 0.12
DECODERS_COMPILE_PRIOR_S = 40.0  # the VAE decoder and the vocoder, default mode: 33 s on 2026-12-04's host


class DeadlineReached(BaseException):
    """Raised by the alarm at the deadline, in the middle of whatever ran over (not an ``Exception``: an item's
    own error handling must not swallow it)."""


@dataclass
class Deadline:
    """The time the run must end by, on ``clock`` (injectable for tests)."""

    end_s: float
    clock: Clock = time.monotonic

    def left_s(self) -> float:
        return self.end_s - self.clock()

    def fits(self, cost_s: float) -> bool:
        """Would an item estimated at ``cost_s`` end before the deadline, with a margin for the estimate's error?"""
        return cost_s * MARGIN + SLACK_S <= self.left_s()

    def too_long(self, cost_s: float) -> str:
        """Why an item is skipped, in words."""
        return f"would take about {cost_s:.0f} s and {max(self.left_s(), 0):.0f} s are left"


def repeats_that_fit(deadline: Deadline, per_call_s: float, *, repeats: int, fixed_s: float = 0.0,
                     least: int = 1) -> int:
    """The most timed runs (``repeats`` at most, ``least`` at least) that fit before the deadline; 0 if fewer."""
    for runs in range(repeats, least - 1, -1):
        if deadline.fits(fixed_s + runs * per_call_s):
            return runs
    return 0


@dataclass
class StepCosts:
    """A generation's time as a fixed part (text side, decoders) plus a cost per denoising step."""

    fixed_s: float
    per_step_s: float

    def clip_s(self, steps: int) -> float:
        return self.fixed_s + steps * self.per_step_s


def fit_step_costs(few: int, few_s: float, more: int, more_s: float) -> StepCosts:
    """The straight line through two timings of the same generation at ``few`` and ``more`` steps."""
    per_step_s = max((more_s - few_s) / max(more - few, 1), 0.0)
    return StepCosts(fixed_s=max(few_s - few * per_step_s, 0.0), per_step_s=per_step_s)


FIXED_SHARE_GUESS = 0.3  # a kind measured at one step count only: assume 30 % of its clip is the fixed part


@dataclass
class CostModel:
    """Seconds per generation for each kind of UNet ("eager", "compiled"), learned from what this run measured.

    A kind measured at two step counts (or split into stages) gets its own straight line; measured at one count
    only, a guessed fixed share; never measured, a guess from another kind (:meth:`guess`), or nothing (``None``)
    when nothing at all was measured: the caller then times one call first and decides from that.
    """

    lines: dict[str, StepCosts] = field(default_factory=dict)
    load_s: float = 30.0  # loading a pipeline, until one has been timed here

    def clip_s(self, steps: int, kind: str, batch: int = 1) -> float | None:
        """Seconds for a clip of ``steps`` steps (``batch`` clips) of ``kind`` ("eager float16"), or None when
        nothing measured so far says."""
        line = self.lines.get(kind) or self.guess(kind)
        return None if line is None else line.clip_s(steps) * batch

    def guess(self, kind: str) -> StepCosts | None:
        """A kind not measured yet, from one that was, erring long: another precision of the same UNet x 2 (float32
        against half precision), an eager UNet from a compiled one x 10 (CUDA graphs cut 5x on 2026-12-04's H200),
        a compiled one from an eager one x 1."""
        unet = kind.split()[0]
        for other, line in self.lines.items():
            if other.split()[0] == unet:
                return StepCosts(2 * line.fixed_s, 2 * line.per_step_s)
        for other, line in self.lines.items():
            factor = 10.0 if unet == "eager" else 1.0
            return StepCosts(factor * line.fixed_s, factor * line.per_step_s)
        return None

    def learn(self, kind: str, steps: int, seconds: float) -> None:
        """One clip of ``steps`` steps took ``seconds``: keep the line's shape, move it through this point."""
        line = self.lines.get(kind)
        if line is None:
            self.lines[kind] = StepCosts(FIXED_SHARE_GUESS * seconds, (1 - FIXED_SHARE_GUESS) * seconds / max(steps, 1))
            return
        predicted = line.clip_s(steps)
        factor = seconds / predicted if predicted > 0 else 1.0
        self.lines[kind] = StepCosts(line.fixed_s * factor, line.per_step_s * factor)

    def learn_line(self, kind: str, line: StepCosts) -> None:
        """A measured split (two step counts, or a stage split): the kind's line from now on."""
        self.lines[kind] = line


# --------------------------------------------------------------------------------------------
# The host
# --------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The host CPU's model name ("AMD EPYC 9654 96-Core Processor"): a GPU's figures depend on it wherever the
    host waits (eager launches, compiling), so it is written beside every GPU figure."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    if platform.system() == "Darwin":
        import subprocess

        done = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def host_yardstick_s(clock: Clock = time.perf_counter, trials: int = 3) -> float:
    """Seconds this host takes for a fixed piece of host-bound work, best of ``trials``: small PyTorch operations
    on the CPU (the dispatcher, as an eager GPU model waits on it) and plain Python (as a compiler spends it).
    Smaller is faster; it compares hosts, it measures no model."""
    import torch

    x = torch.ones(8)
    best = float("inf")
    for _ in range(trials):
        start = clock()
        for _ in range(20_000):
            x = (x * 1.0001).add_(1e-4)
        total = 0
        for i in range(1_500_000):
            total += i % 7
        best = min(best, clock() - start)
    return best


def host_scale(yardstick_s: float | None) -> float:
    """How much slower than the reference host this one is (within a factor of 3 either way: a rough guide)."""
    return 1.0 if not yardstick_s else min(max(yardstick_s / REFERENCE_YARDSTICK_S, 1 / 3), 3.0)


def compile_prior_s(yardstick_s: float | None) -> float:
    """The first compiled UNet call's expected seconds on this host: the measured 138 s scaled by the host."""
    return UNET_COMPILE_PRIOR_S * host_scale(yardstick_s)


def decoders_prior_s(yardstick_s: float | None) -> float:
    """The first call of rung 7's compiled VAE decoder and vocoder, scaled by the host."""
    return DECODERS_COMPILE_PRIOR_S * host_scale(yardstick_s)


# --------------------------------------------------------------------------------------------
# The alarm: the backstop for an item that runs over its estimate
# --------------------------------------------------------------------------------------------
@contextmanager
def alarm_at(deadline: Deadline):
    """Raise :class:`DeadlineReached` in the main thread if the run is still going at the deadline, or when the
    process is told to stop (SIGTERM, as ``timeout`` sends): the run then writes its end row and summary. POSIX
    only; elsewhere the estimates alone keep the deadline."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if usable:
        def ring(signum, frame):
            raise DeadlineReached("the deadline came during an item that ran over its estimate"
                                  if signum == signal.SIGALRM else "stopped from outside (SIGTERM)")
        previous = {number: signal.signal(number, ring) for number in (signal.SIGALRM, signal.SIGTERM)}
        signal.setitimer(signal.ITIMER_REAL, max(deadline.left_s(), 0.01))
    try:
        yield
    finally:
        if usable:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for number, handler in previous.items():
                signal.signal(number, handler)
