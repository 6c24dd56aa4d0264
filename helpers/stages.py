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


@dataclass
class StepProfile:
    """The denoising loop of one profiled generation, per step, as the device saw it; and the whole clip.

    ``busy``: the union of the device's work intervals (on a GPU its kernels and copies; on a CPU, the operators
    PyTorch ran, outermost only); ``span``: from the first piece of that work to the last. Busy far below span is a
    device waiting for its host (host-bound: fewer launches help, CUDA graphs, fewer steps of Python); busy close
    to span is kernel-bound (only less or cheaper work helps).
    """

    work: str  # "GPU kernels and copies" or "CPU operators"
    steps: int
    launches_per_step: float
    busy_per_step_s: float
    span_per_step_s: float
    clip_launches: int
    clip_busy_s: float
    clip_span_s: float
    unplaced: int = 0  # device work whose launch the profiler did not record (not counted in the loop)

    @property
    def step_busy_share(self) -> float:
        return self.busy_per_step_s / self.span_per_step_s if self.span_per_step_s else 0.0

    @property
    def clip_busy_share(self) -> float:
        return self.clip_busy_s / self.clip_span_s if self.clip_span_s else 0.0

    def verdict(self, bound_share: float = 0.8) -> str:
        """One line: what bounds a step, from the loop's busy share (``bound_share`` and above: the work itself)."""
        share = self.step_busy_share
        if share >= bound_share:
            return (f"bound by the work: busy {share:.0%} of each step; only less or cheaper work makes a step "
                    "faster")
        if self.work == "CPU operators":
            return (f"{1 - share:.0%} of each step is Python between PyTorch's operators; less of it (a compiled "
                    "graph) makes a step faster")
        return (f"host-bound: the GPU waits {1 - share:.0%} of each step for its host; fewer launches (CUDA graphs, "
                "fused kernels) or less Python per step make it faster")

    def floor_line(self, flops_per_step: float, peak_flops_per_s: float) -> str:
        """How far a step is from its FLOP floor: its operations at the device's measured peak (one line)."""
        floor_s = flops_per_step / peak_flops_per_s
        return (f"a step's FLOP floor: {flops_per_step / 1e9:,.1f} GFLOP at {peak_flops_per_s / 1e12:,.2f} TFLOP/s = "
                f"{floor_s * 1e3:.2f} ms; the step is busy {self.busy_per_step_s / floor_s:.1f}x that and takes "
                f"{self.span_per_step_s / floor_s:.1f}x that")

    def __str__(self) -> str:
        lines = [f"denoising loop, per step (over {self.steps} UNet calls): {self.launches_per_step:,.0f} {self.work};"
                 f" busy {self.busy_per_step_s * 1e3:.2f} ms of each {self.span_per_step_s * 1e3:.2f} ms step "
                 f"({self.step_busy_share:.0%})",
                 f"whole clip: {self.clip_launches:,} {self.work}; busy {self.clip_busy_s * 1e3:.1f} ms of "
                 f"{self.clip_span_s * 1e3:.1f} ms ({self.clip_busy_share:.0%})", self.verdict()]
        if self.unplaced:
            lines.append(f"{self.unplaced:,} of the {self.work} had no launch in the profile: left out of the loop")
        return "\n".join(lines)


def _union_us(intervals: list[tuple[float, float]]) -> float:
    """Microseconds covered by at least one of ``intervals`` (overlapping work counts once)."""
    covered, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            covered += stop - max(start, end)
            end = stop
    return covered


def step_profile(profiler, loop_stage: str = "UNet") -> StepProfile:
    """Read a :func:`profile_stages` profile per denoising step: work launched, busy time, step time.

    The steps are the calls of ``loop_stage`` (one per step, each a ``record_function`` range on the host). On a
    GPU each kernel is placed by the host call that launched it (the profiler links the two by a correlation id):
    the loop's window on the GPU runs from the first kernel launched inside a UNet call to the last one, and
    everything the GPU did in that window (the scheduler's kernels too) counts as busy. On a CPU, where PyTorch's
    operators run as they are called, the window is the operators inside the UNet calls, and busy time is theirs:
    what is left is Python between them.
    """
    from torch.autograd import DeviceType

    events = list(profiler.events())
    host = [e for e in events if e.device_type == DeviceType.CPU]
    calls = [(e.time_range.start, e.time_range.end) for e in host if e.name == loop_stage]
    if not calls:
        raise ValueError(f"no {loop_stage!r} range in this profile: profile the generation with profile_stages")

    def in_a_call(t: float) -> bool:
        return any(start <= t <= end for start, end in calls)

    device = [e for e in events if e.device_type != DeviceType.CPU and not e.is_user_annotation]
    if device:
        work_name = "GPU kernels and copies"
        launched = {e.linked_correlation_id: e.time_range.start for e in host if e.linked_correlation_id > 0}
        work = [(e.time_range.start, e.time_range.end) for e in device]
        loop = [(e.time_range.start, e.time_range.end) for e in device
                if e.linked_correlation_id in launched and in_a_call(launched[e.linked_correlation_id])]
        unplaced = sum(e.linked_correlation_id not in launched for e in device)
    else:
        work_name = "CPU operators"
        operators = [e for e in host if e.name.startswith("aten::") and not _inside_an_operator(e)]
        work = [(e.time_range.start, e.time_range.end) for e in operators]
        loop = [interval for interval in work if in_a_call(interval[0])]
        unplaced = 0
    if not loop:
        raise ValueError(f"no work inside the {loop_stage!r} ranges of this profile")
    first, last = min(start for start, _ in loop), max(end for _, end in loop)
    in_window = [(max(start, first), min(end, last)) for start, end in work if end > first and start < last]
    steps = len(calls)
    return StepProfile(
        work=work_name, steps=steps,
        launches_per_step=sum(first <= start < last for start, _ in work) / steps,
        busy_per_step_s=_union_us(in_window) / 1e6 / steps, span_per_step_s=(last - first) / 1e6 / steps,
        clip_launches=len(work), clip_busy_s=_union_us(work) / 1e6,
        clip_span_s=(max(end for _, end in work) - min(start for start, _ in work)) / 1e6, unplaced=unplaced)


def _inside_an_operator(event) -> bool:
    """True if ``event`` runs inside another PyTorch operator (its time is already that operator's)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False
