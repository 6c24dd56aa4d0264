"""Where one generation's time goes: the text encoders, GPT-2, the UNet loop, the VAE and the vocoder.

Once the UNet is fast (half precision, torch.compile, 20 steps instead of 200), the parts that run once per clip
can be most of what is left, and no optimisation of the UNet can remove them (Amdahl's law). To see it we time
every call of each part, with a forward hook before and after it:

* on a CUDA GPU each hook records a **CUDA event**: a mark the GPU stamps with its own clock when its queue
  reaches it. Nothing waits; all the differences are read after one synchronise at the end. So the split run
  takes as long as an unsplit one, and the GPU work each part queued is counted to it. An event pair also counts
  the GPU's idle time between them (a part whose kernels the CPU launches slowly shows that wait);
* elsewhere each hook synchronises the device and reads a clock (a CPU computes as it is called, so nothing is
  lost by waiting).

The hooks cost a little time of their own; use the split for shares, and :func:`helpers.measure` for the clip's
time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import reduce

import torch

from helpers.timing import Clock, synchronize

# stage -> the pipeline's modules whose calls make it. Some are not the component itself: the pipeline calls
# CLAP's get_text_features (its text model, then its projection) and the VAE's decode (post_quant_conv, then
# the decoder), never their forward.
STAGES = {
    "CLAP text encoder": ("text_encoder.text_model", "text_encoder.text_projection"),
    "T5 text encoder": ("text_encoder_2",),
    "projection": ("projection_model",),
    "GPT-2": ("language_model",),
    "UNet": ("unet",),
    "VAE decoder": ("vae.post_quant_conv", "vae.decoder"),
    "vocoder": ("vocoder",),
}


def stage_modules(pipe) -> Iterator[tuple[str, int, torch.nn.Module]]:
    """(stage, position within the stage, module) for every module of :data:`STAGES` in ``pipe``."""
    static_gpt2 = pipe.__dict__.get("generate_language_model")  # helpers.gpt2's loop, if the pipeline runs it
    for stage, names in STAGES.items():
        for index, name in enumerate(names):
            module = reduce(getattr, name.split("."), pipe)
            if stage == "GPT-2" and isinstance(static_gpt2, torch.nn.Module):
                module = static_gpt2  # it runs GPT2Model alone: a hook on the language model would never fire
            yield stage, index, module


@dataclass
class StageTimes:
    """Seconds and calls per stage in one generation, and that generation's whole time."""

    seconds: dict[str, float]
    calls: dict[str, int]
    total_s: float
    steps: int | None = None  # denoising steps, for the per-step cost
    device: str = "cpu"

    @property
    def other_s(self) -> float:
        """What no stage accounts for: the scheduler, the pipeline's Python, tokenisers, copies."""
        return max(self.total_s - sum(self.seconds.values()), 0.0)

    @property
    def per_step_s(self) -> float | None:
        """The UNet loop's seconds per denoising step (None when the step count is not known)."""
        return self.seconds["UNet"] / self.steps if self.steps else None

    @property
    def fixed_s(self) -> float:
        """Everything but the UNet loop: what fewer or faster steps cannot remove."""
        return self.total_s - self.seconds["UNet"]

    def __str__(self) -> str:
        lines = [f"{'stage':18} {'calls':>5} {'seconds':>9} {'share':>6}"]
        for stage, seconds in [*self.seconds.items(), ("everything else", self.other_s)]:
            calls = f"{self.calls[stage]:5d}" if stage in self.calls else " " * 5
            lines.append(f"{stage:18} {calls} {seconds:9.3f} {seconds / self.total_s:6.1%}")
        lines.append(f"{'one generation':18} {'':5} {self.total_s:9.3f} [{self.device}]")
        if self.per_step_s is not None:
            lines.append(f"UNet per step {self.per_step_s:.4f} s; fixed part {self.fixed_s:.3f} s")
        return "\n".join(lines)


def time_stages(pipe, generate: Callable[[], object], device: torch.device | str, *, steps: int | None = None,
                clock: Clock = time.perf_counter, new_event: Callable[[], object] | None = None) -> StageTimes:
    """Call ``generate()`` once with every stage's modules timed; returns a :class:`StageTimes`.

    ``generate`` must use ``pipe`` (its modules carry the hooks while it runs). On CUDA the hooks record CUDA
    events and nothing synchronises until the end; elsewhere they synchronise and read ``clock``. ``new_event``
    (a factory of objects with ``record()``, ``elapsed_time(other)`` in milliseconds and ``synchronize()``, like
    ``torch.cuda.Event(enable_timing=True)``) and ``clock`` are there for tests.
    """
    if new_event is None and torch.device(device).type == "cuda":
        def new_event():
            return torch.cuda.Event(enable_timing=True)

    if new_event is not None:  # the GPU stamps each mark when it gets there; read them all at the end
        def mark():
            event = new_event()
            event.record()
            return event

        def seconds_between(start, end) -> float:
            return start.elapsed_time(end) / 1000.0  # elapsed_time is in milliseconds
    else:  # wait for the device, then read the clock
        def mark():
            synchronize(device)
            return clock()

        def seconds_between(start, end) -> float:
            return end - start

    spans: list[tuple[str, object, object]] = []  # (stage, mark before a call, mark after it)
    calls = {stage: 0 for stage in STAGES}
    started: dict[int, object] = {}
    handles = []

    def before(module, args):
        started[id(module)] = mark()

    def after_for(stage: str, counts: bool):
        def after(module, args, output):
            spans.append((stage, started.pop(id(module)), mark()))
            calls[stage] += counts  # a stage made of two modules in a row counts one call
        return after

    for stage, index, module in stage_modules(pipe):
        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after_for(stage, counts=index == 0)))
    try:
        start = mark()
        generate()
        end = mark()
    finally:
        for handle in handles:
            handle.remove()
    if new_event is not None:
        end.synchronize()  # the one wait: every mark before it has been stamped
    seconds = {stage: 0.0 for stage in STAGES}
    for stage, before_call, after_call in spans:
        seconds[stage] += seconds_between(before_call, after_call)
    return StageTimes(seconds, calls, seconds_between(start, end), steps=steps, device=str(torch.device(device)))


def profile_stages(pipe, generate: Callable[[], object], device: torch.device | str, trace_path=None):
    """Run ``generate()`` once under ``torch.profiler``, each stage's calls marked as a named range.

    Returns the profiler; ``.key_averages()`` tables it. ``trace_path``: also write a trace that
    ``chrome://tracing`` or https://ui.perfetto.dev opens, every kernel on a time line under its stage.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU]
    if torch.device(device).type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    ranges: dict[int, list] = {}
    handles = []

    def before_for(stage: str):
        def before(module, args):
            ranges.setdefault(id(module), []).append(record_function(stage).__enter__())
        return before

    def after(module, args, output):
        ranges[id(module)].pop().__exit__(None, None, None)

    for stage, _, module in stage_modules(pipe):
        handles += [module.register_forward_pre_hook(before_for(stage)), module.register_forward_hook(after)]
    try:
        with profile(activities=activities) as profiler:
            generate()
            synchronize(device)
    finally:
        for handle in handles:
            handle.remove()
    if trace_path is not None:
        profiler.export_chrome_trace(str(trace_path))
    return profiler


def how_stages_are_timed(device: torch.device | str) -> str:
    """How :func:`time_stages` reads each stage's seconds on ``device``, in a few words (for a chart's axis, a note).

    The two ways differ (a CUDA event pair also counts the GPU's idle time between its marks), so a reader should
    know which one made the figures: on CUDA, events stamped by the GPU and read after one synchronise at the end;
    elsewhere, the device synchronised and a clock read at every hook.
    """
    if torch.device(device).type == "cuda":
        return "CUDA events at each stage, read after one synchronise at the end"
    return "each stage synchronised and timed with time.perf_counter"


def profiler_sort_key(device: torch.device | str) -> str:
    """The ``key_averages().table(sort_by=...)`` column that ranks operations by where the time went on ``device``.

    On CUDA the kernels' own time on the GPU (``device_time_total``); elsewhere there are only the CPU's times.
    """
    return "device_time_total" if torch.device(device).type == "cuda" else "cpu_time_total"
