"""The course's measurements in one process, with a deadline: ``python -m helpers.bench --deadline 480 --out DIR``.

Made for a short turn on a GPU, where nothing may be lost when the time is up. In order of priority:

1. the machine: device, versions, and the measured peak of a large matrix product in each precision it computes;
2. notebook 08's ladder, rungs 1 to 7, on one pipeline (eager rungs: one warm-up call and two timed runs); the
   stage split (:mod:`helpers.stages`, CUDA events on a GPU) of the last rungs, with each stage's FLOPs against
   the measured peak (:mod:`helpers.flops`);
3. notebook 10's techniques, each measured against the baseline it changes (eager against eager, compiled
   against compiled); a repeated baseline gives each group its noise floor (:func:`helpers.timing.noise_floor_s`);
4. DPM-Solver++ and UniPC at 10, 15 and 20 steps;
5. throughput at a batch of 1, 4 and 16 clips.

Each row goes to ``DIR/results.jsonl`` (one JSON object per line, flushed and synced) the moment it exists, so a
run stopped at any moment leaves a valid file; ``DIR/summary.md`` is written again after every item. Before each
item the clock is read and the item's cost estimated from what was measured so far; an item that would not end
before the deadline is skipped, and the summary says what was skipped and why. On a GPU the settings are the
blog's (10.24 s clips, DDIM 200, DPM-Solver++ 20); elsewhere :mod:`helpers.settings` applies (CPU profile, smoke).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import platform
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch
from torch._dynamo.eval_frame import OptimizedModule

from helpers import compiling, deep_cache, fusing, precision, prompts, quantizing, recipe, settings
from helpers.checkpoints import describe_checkpoint
from helpers.errors import CourseError, QuantizationUnavailableError
from helpers.flops import peak_flops_per_s, stage_flops
from helpers.generating import generate
from helpers.loading import default_device, load_pipeline
from helpers.memory import peak_memory
from helpers.results import append_row, device_name, read_rows, record
from helpers.stages import time_stages
from helpers.timing import Clock, StepCosts, Timing, estimate_step_costs, noise_floor_s, speedup_text, time_once, time_runs

RESULTS_FILE, SUMMARY_FILE = "results.jsonl", "summary.md"
# What a first compiled call costs before anything here has been measured (then the estimates use what was):
# the UNet under mode="reduce-overhead" took 76 to 94 s on an H200 (one 200-step clip included); the VAE decoder
# and the vocoder in the default mode, 21 s.
UNET_COMPILE_S = 150.0
DECODERS_COMPILE_S = 60.0
MARGIN, SLACK_S = 1.25, 3.0  # an item starts only if 1.25 x its estimate, plus 3 s, is left
TARGET_SPEEDUP = 100.0  # the ladder's targets (issue 16): rung 7 >= 100x rung 1 ...
TARGET_CLIP_MS = 60.0  # ... and a 10.24 s clip in 60 ms or less on an H100 or H200, prompt encoding included


class DeadlineReached(BaseException):
    """Raised by the alarm at the deadline, in the middle of whatever ran over (not an ``Exception``: an item's
    own error handling must not swallow it)."""


# --------------------------------------------------------------------------------------------
# The clock and the cost of an item
# --------------------------------------------------------------------------------------------
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


@dataclass
class CostModel:
    """Seconds per generation, predicted from the first short runs and corrected by every measurement since.

    ``base`` is the pipeline's split into a fixed part and a cost per step (:func:`helpers.timing.estimate_step_costs`,
    at rung 1). ``scales`` holds, for the eager and the compiled UNet apart, how much faster or slower the last
    measurement of that kind was than ``base`` predicts. A change not measured yet keeps the last scale of its kind
    (the compiled kind starts from the eager one): the ladder's changes make it faster, so the estimate errs long.
    """

    base: StepCosts
    scales: dict[str, float] = field(default_factory=lambda: {"eager": 1.0})
    load_s: float = 30.0  # loading a pipeline, until one has been timed here

    def clip_s(self, steps: int, batch: int = 1, kind: str = "eager") -> float:
        scale = self.scales.get(kind, self.scales["eager"])
        return scale * self.base.clip_s(steps) * batch

    def learn(self, steps: int, seconds_per_clip: float, kind: str = "eager") -> None:
        self.scales[kind] = seconds_per_clip / max(self.base.clip_s(steps), 1e-9)


def repeats_that_fit(deadline: Deadline, per_call_s: float, *, warmup: int, repeats: int, fixed_s: float = 0.0) -> int:
    """The most timed runs (``repeats`` at most, 1 at least) that fit before the deadline; 0 if none does."""
    for runs in range(repeats, 0, -1):
        if deadline.fits(fixed_s + (warmup + runs) * per_call_s):
            return runs
    return 0


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
@dataclass
class Bench:
    """One benchmark run: the pipeline, the device, the deadline, and the results file every row goes to."""

    out: Path
    deadline: Deadline
    model: str
    device: torch.device
    command: str
    pipe: object = None
    cost: CostModel | None = None
    negative_prompt: str | None = None
    seconds: float = field(default_factory=lambda: settings.audio_seconds(settings.AUDIO_LENGTH_S))
    ddim_steps: int = field(default_factory=lambda: settings.steps(200))
    dpm_steps: int = field(default_factory=lambda: settings.steps(20))
    steps: int = 0
    eager_unet: torch.nn.Module | None = None
    compiled_unet: torch.nn.Module | None = None
    decoders: tuple | None = None  # rung 7's compiled VAE decoder and vocoder, kept to reuse
    timings: dict[str, Timing] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)
    autocast: Callable[[], object] = nullcontext

    @property
    def path(self) -> Path:
        return self.out / RESULTS_FILE

    # ---- writing -------------------------------------------------------------------------
    def write(self, kind: str, **fields) -> dict:
        row = {"kind": kind, **fields, "t_s": round(time.monotonic() - START_MONOTONIC, 2)}
        append_row(row, self.path)
        return row

    def skip(self, item: str, section: str, reason: str) -> None:
        print(f"skipped: {item}: {reason}", flush=True)
        self.write("skipped", item=item, section=section, reason=reason)

    def too_long(self, cost_s: float) -> str:
        return f"would take about {cost_s:.0f} s and {max(self.deadline.left_s(), 0):.0f} s are left"

    def item(self, name: str, section: str, run: Callable[[], None]) -> None:
        """Run one item; an error is written down and the run goes on with the next."""
        try:
            run()
        except DeadlineReached:
            raise
        except Exception as error:  # one technique failing must not cost the others
            message = f"{type(error).__name__}: {' '.join(str(error).split())[:400]}"
            print(f"error in {name}: {message}", flush=True)
            self.write("error", item=name, section=section, error=message,
                       where=traceback.format_exc(limit=-3).splitlines()[-3:])
        finally:
            write_summary(self.out)

    # ---- generating and measuring ----------------------------------------------------------
    def kind(self, pipe=None) -> str:
        """"compiled" when the pipeline's UNet is compiled, else "eager": the cost model keeps them apart."""
        unet = (pipe or self.pipe).unet
        return "compiled" if isinstance(unet, OptimizedModule) else "eager"

    def clip_s(self, steps: int | None = None, batch: int = 1) -> float:
        """The estimated seconds of one generation of the pipeline as it is now."""
        return self.cost.clip_s(steps or self.steps, batch, self.kind())

    def generate(self, steps: int, batch: int = 1, pipe=None, **kwargs):
        prompt = settings.PROMPT if batch == 1 else [settings.PROMPT] * batch
        negative = self.negative_prompt if batch == 1 or self.negative_prompt is None else [self.negative_prompt] * batch
        with self.autocast():
            return generate(pipe or self.pipe, prompt, num_inference_steps=steps, audio_length_in_s=self.seconds,
                            negative_prompt=negative, **kwargs)

    def measure(self, label: str, section: str, *, steps: int | None = None, batch: int = 1, warmup: int = 1,
                repeats: int = 2, fixed_cost_s: float = 0.0, pipe=None, learn: bool = True, **fields) -> Timing | None:
        """Time ``warmup`` + ``repeats`` generations (fewer repeats if the deadline needs it) and write the row."""
        steps = steps or self.steps
        repeats = settings.repeats(repeats)
        kind = self.kind(pipe)
        per_call_s = self.cost.clip_s(steps, batch, kind)
        runs = repeats_that_fit(self.deadline, per_call_s, warmup=warmup, repeats=repeats, fixed_s=fixed_cost_s)
        if runs == 0:
            self.skip(label, section, self.too_long(fixed_cost_s + (warmup + 1) * per_call_s))
            return None
        print(f"{label}: {warmup} warm-up + {runs} timed, about {fixed_cost_s + (warmup + runs) * per_call_s:.0f} s",
              flush=True)
        with peak_memory(self.device) as memory:
            timing = time_runs(lambda: self.generate(steps, batch, pipe=pipe), device=self.device, label=label,
                               warmup=warmup, repeats=runs)
        timing.audio_seconds = self.seconds * batch
        print(f"  {timing}", flush=True)
        extra = {"kind": "measurement", "section": section, "batch": batch, "runs_s": timing.runs_s, **fields}
        if runs < repeats:
            extra["note"] = f"{runs} timed run(s) instead of {repeats}, to end before the deadline"
        record("bench", label, timing, memory, pipe=pipe or self.pipe, steps=steps, path=self.path, extra=extra)
        if learn:
            self.cost.learn(steps, timing.median_s / batch, kind)
        self.timings[label] = timing
        return timing

    def split(self, label: str, section: str = "ladder") -> None:
        """One more generation with every stage timed (CUDA events on a GPU): where the time goes."""
        cost_s = self.clip_s(self.steps) * 1.5
        if not self.deadline.fits(cost_s):
            self.skip(f"stage split of {label}", section, self.too_long(cost_s))
            return
        split = time_stages(self.pipe, lambda: self.generate(self.steps), self.device, steps=self.steps)
        print(f"stage split of rung {label}: UNet {split.seconds['UNet'] / split.total_s:.0%} of {split.total_s:.3f} s",
              flush=True)
        self.write("stages", label=label, section=section, steps=self.steps, dtype=_dtype_name(self.pipe),
                   seconds=split.seconds, calls=split.calls, total_s=split.total_s, other_s=split.other_s,
                   fixed_s=split.fixed_s, per_step_s=split.per_step_s,
                   method="CUDA events" if self.device.type == "cuda" else "synchronise and clock")

    def count_flops(self, label: str) -> None:
        """Each stage's floating-point operations in a 2-step generation, on the eager modules (a compiled
        graph's kernels are not seen by the counter); the summary scales the UNet's to each split's steps."""
        cost_s = 4 * self.cost.clip_s(2)
        if not self.deadline.fits(cost_s):
            self.skip(f"FLOPs of {label}", "ladder", self.too_long(cost_s))
            return
        attention = nullcontext()
        if self.device.type == "cpu":  # the counter knows the CUDA attention kernels only: count the math one
            from torch.nn.attention import SDPBackend, sdpa_kernel

            attention = sdpa_kernel(SDPBackend.MATH)
        with eager_modules(self.pipe), attention:
            flops = stage_flops(self.pipe, lambda: self.generate(2))
        print(f"FLOPs of rung {label}: {sum(flops.values()) / 1e9:.1f} GFLOP in a 2-step generation", flush=True)
        self.write("flops", label=label, steps=2, flops=flops)

    # ---- 1. the machine -------------------------------------------------------------------
    def machine(self) -> None:
        device = self.device
        row = {"device": str(device), "device_name": device_name(device), "python": platform.python_version(),
               "platform": platform.platform(), "cpu_count": os.cpu_count(), "versions": versions(),
               "command": self.command, "deadline_s": round(self.deadline.left_s()), "model": self.model,
               "smoke": settings.smoke_mode(), "cpu_profile": settings.cpu_profile(), "audio_seconds": self.seconds,
               "ddim_steps": self.ddim_steps, "dpm_steps": self.dpm_steps,
               "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if device.type == "cuda":
            capability = torch.cuda.get_device_capability(device)
            row.update(cuda_capability=f"{capability[0]}.{capability[1]}",
                       gpu_memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 1024**3, 1))
        else:
            features = precision.CpuFeatures.of_this_machine()
            row.update(avx512_bf16=features.avx512_bf16, amx=features.amx)
        self.write("machine", **row)

    def measure_peaks(self) -> None:
        """The device's own yardstick: a large matrix product in each precision it computes natively."""
        if self.device.type == "cuda":
            size, repeats, kinds = 8192, 20, ["float16", "bfloat16", "tf32", "float32"]
        else:
            size, repeats, kinds = (1024 if settings.smoke_mode() else 2048), 3, ["float32", "bfloat16"]
        for kind in kinds:
            dtype = torch.float32 if kind in ("tf32", "float32") else getattr(torch, kind)
            if not precision.computes_natively(self.device, dtype):
                self.skip(f"peak {kind}", "machine", precision.why_not(self.device, dtype))
                continue
            if not self.deadline.fits(10):
                self.skip(f"peak {kind}", "machine", self.too_long(10))
                continue
            with precision.tf32(kind == "tf32"):
                flops = peak_flops_per_s(self.device, dtype, size=size, repeats=repeats, trials=2)
            self.peaks[kind] = flops
            self.write("peak", dtype=kind, tflops=flops / 1e12, size=size)

    def load(self) -> None:
        start = time.monotonic()
        self.pipe = load_pipeline(self.model, torch_dtype=torch.float32, device=self.device)
        load_s = time.monotonic() - start
        checkpoint = describe_checkpoint(self.pipe.name_or_path)
        self.steps = self.ddim_steps
        start = time.monotonic()
        self.pipe.unet.set_attn_processor(_classic_attention())
        costs = estimate_step_costs(lambda n: self.generate(n), self.device, few=1, more=3)
        self.cost = CostModel(costs, load_s=max(load_s, 5.0))
        self.write("load", model=self.model, path=str(self.pipe.name_or_path), checkpoint_kind=checkpoint.kind,
                   random_weights=checkpoint.random_weights, load_s=load_s, fixed_s=costs.fixed_s,
                   per_step_s=costs.per_step_s, estimate_s=time.monotonic() - start)

    # ---- 2. the ladder --------------------------------------------------------------------
    def ladder(self) -> None:
        section = "ladder"
        self.item("rung 1", section, lambda: self.measure(f"1. float32, DDIM {self.steps}, classic attention", section,
                                                          rung=1))

        def rung2():
            self.negative_prompt = settings.NEGATIVE_PROMPT
            self.measure("2. + negative prompt", section, rung=2)
        self.item("rung 2", section, rung2)

        def rung3():
            from diffusers.models.attention_processor import AttnProcessor2_0

            self.pipe.unet.set_attn_processor(AttnProcessor2_0())
            self.measure("3. + SDPA attention", section, rung=3)
        self.item("rung 3", section, rung3)
        self.item("rung 4", section, self.rung4)
        self.item("rung 5", section, self.rung5)

        def rung6():
            from diffusers import DPMSolverMultistepScheduler

            self.pipe.scheduler = DPMSolverMultistepScheduler.from_config(self.pipe.scheduler.config)
            self.steps = self.dpm_steps
            compiled = self.compiled_unet is not None
            self.measure(f"6. + DPM-Solver++ {self.steps} steps", section, rung=6, warmup=1, repeats=3 if compiled else 2)
        self.item("rung 6", section, rung6)
        self.item("stage split of rung 6", section, lambda: self.split("6"))
        self.item("FLOPs of rung 6", section, lambda: self.count_flops("6"))
        self.item("rung 7", section, self.rung7)

    def rung4(self) -> None:
        half = precision.half_precision_for(self.device)
        if half is None:
            self.skip("4. half precision", "ladder", precision.why_not(self.device, torch.bfloat16))
            return
        name = str(half).removeprefix("torch.")
        from diffusers.utils import logging as diffusers_logging

        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # it warns about modules to keep in float32, and lists none
        try:
            self.pipe.to(dtype=half)  # the same pipeline object, its weights converted
        finally:
            diffusers_logging.set_verbosity(level)
        gc.collect()
        self.measure(f"4. {name}", "ladder", rung=4)

    def rung5(self) -> None:
        label = "5. + torch.compile"
        if self.device.type != "cuda":
            self.skip(label, "ladder", "mode='reduce-overhead' replays CUDA graphs, a CUDA feature; notebook 08 skips "
                                       "this rung off CUDA too")
            return
        ok, reason = compiling.compile_support(self.device)
        if not ok:
            self.skip(label, "ladder", f"torch.compile cannot run here: {reason}")
            return
        cost_s = UNET_COMPILE_S + 4 * self.clip_s(self.steps)
        if not self.deadline.fits(cost_s):  # never start a compile that cannot end in time
            self.skip(label, "ladder", f"compiling the UNet first: {self.too_long(cost_s)}")
            return
        self.eager_unet = self.pipe.unet
        self.pipe.unet = torch.compile(self.eager_unet, mode="reduce-overhead", fullgraph=True)
        print("rung 5: the first call compiles the UNet (minutes are normal) ...", flush=True)
        try:
            first_s = time_once(lambda: self.generate(self.steps), self.device)
        except Exception as error:
            if not compiling.is_compile_failure(error):
                raise
            self.pipe.unet = self.eager_unet
            torch._dynamo.reset()  # half-compiled code must not be called again
            cause = " ".join(str(error).split())[:300]
            self.skip(label, "ladder", f"compiling failed, the ladder goes on eager: {type(error).__name__}: {cause}")
            return
        self.compiled_unet = self.pipe.unet
        self.write("compile", what="UNet, mode='reduce-overhead', fullgraph=True", first_call_s=first_s,
                   steps=self.steps)
        self.measure(label, "ladder", rung=5, warmup=0, repeats=3, first_call_s=first_s)
        self.item("stage split of rung 5", "ladder", lambda: self.split("5"))

    def rung7(self) -> None:
        label = "7. beyond the blog"
        compiles = self.device.type == "cuda" and compiling.compile_support(self.device)[0]
        cost_s = (DECODERS_COMPILE_S if compiles else 0.0) + 4 * self.clip_s(self.steps)
        if not self.deadline.fits(cost_s):
            self.skip(label, "ladder", self.too_long(cost_s))
            return
        changes = recipe.apply_beyond_the_blog(self.pipe, self.device)
        self.autocast = lambda: precision.autocast_for(self.device, self.pipe.dtype)
        try:
            self.measure(label, "ladder", rung=7, changes=changes, repeats=3 if self.compiled_unet else 2,
                         learn=False)  # a combination: the techniques after it are estimated from rung 6
            self.split("7")
            self.count_flops("7")
        finally:
            self.autocast = nullcontext
            if isinstance(self.pipe.vae.decoder, compiling.CompiledOrEager):
                self.decoders = (self.pipe.vae.decoder, self.pipe.vocoder)
            recipe.remove_beyond_the_blog(self.pipe)

    # ---- 3. notebook 10's techniques --------------------------------------------------------
    def techniques(self) -> None:
        section = "techniques"
        if self.compiled_unet is not None:  # compiled against compiled, on the pipeline as rung 6 left it
            self.pipe.unet = self.compiled_unet
            group = "compiled"
            rung6 = next((label for label in self.timings if label.startswith("6.")), None)
            self.item("compiled baseline again", section, lambda: self.measure(
                "compiled UNet: rung 6 again (noise floor)", section, group=group, baseline=True, repeats=3,
                same_as=rung6))
            self.item("compiled + prompts in one batch", section, lambda: self.with_change(
                "compiled UNet + both prompts in one batch", group, *self.batched_prompts()))
            self.item("compiled + decoders compiled", section, self.compiled_decoders)
        # The eager techniques change the UNet's modules (hooks, processors, memory format) and undo it; on a copy,
        # so that the compiled UNet, which wraps the original, meets no failed guard (and no recompile) later.
        kept_unet = self.pipe.unet
        self.pipe.unet = copy.deepcopy(self.eager_unet if self.eager_unet is not None else kept_unet)
        group = "eager"
        self.item("eager baseline", section, lambda: self.measure(
            f"eager UNet: rung 6 ({_dtype_name(self.pipe)}, DPM-Solver++ {self.steps})", section, group=group,
            baseline=True))
        self.item("bfloat16", section, self.bfloat16)
        self.item("channels_last", section, lambda: self.with_change(
            "eager + channels_last UNet and VAE", group, *self.channels_last()))
        self.item("QKV fusion", section, lambda: self.with_change(
            "eager + QKV projections fused", group, lambda: fusing.fuse_qkv(self.pipe.unet),
            lambda: fusing.unfuse_qkv(self.pipe.unet)))
        self.item("prompts in one batch", section, lambda: self.with_change(
            "eager + both prompts in one batch", group, *self.batched_prompts()))
        self.item("DeepCache", section, lambda: self.with_change(
            "eager + deep features reused every 2nd step", group,
            lambda: deep_cache.apply_deep_cache(self.pipe.unet, interval=2),
            lambda: deep_cache.remove_deep_cache(self.pipe.unet)))
        self.item("Pyramid Attention Broadcast", section, lambda: self.with_change(
            "eager + Pyramid Attention Broadcast", group, *self.pyramid_attention_broadcast()))
        self.item("int8", section, self.int8)
        self.item("eager baseline again", section, lambda: self.measure(
            "eager UNet: rung 6 again (noise floor)", section, group=group, baseline=True))
        self.item("TF32", section, self.tf32)
        self.pipe.unet = kept_unet
        gc.collect()

    def with_change(self, label: str, group: str, apply: Callable[[], object], undo: Callable[[], object],
                    **fields) -> None:
        apply()
        try:
            self.measure(label, "techniques", group=group, repeats=3 if group == "compiled" else 2, learn=False,
                         **fields)
        finally:
            undo()

    def batched_prompts(self):
        return (lambda: prompts.batch_prompt_encoding(self.pipe)), (lambda: self.pipe.__dict__.pop("encode_prompt"))

    def channels_last(self):
        def to(memory_format):
            self.pipe.unet.to(memory_format=memory_format)
            self.pipe.vae.to(memory_format=memory_format)
        return (lambda: to(torch.channels_last)), (lambda: to(torch.contiguous_format))

    def pyramid_attention_broadcast(self):
        from diffusers.hooks import HookRegistry, PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

        unet = self.pipe.unet

        def apply():
            timestep = deep_cache.track_timestep(self.pipe)  # counted, not read from the GPU each step
            apply_pyramid_attention_broadcast(unet, PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=2, current_timestep_callback=timestep))

        def undo():
            registry = HookRegistry.check_if_exists_or_initialize(unet)
            registry.remove_hook("pyramid_attention_broadcast", recurse=True)
            registry.remove_hook("current_timestep", recurse=False)
        return apply, undo

    def compiled_decoders(self) -> None:
        label = "compiled UNet + VAE decoder and vocoder compiled"
        if self.decoders is None:
            cost_s = DECODERS_COMPILE_S + 4 * self.clip_s(self.steps)
            if not self.deadline.fits(cost_s):
                self.skip(label, "techniques", self.too_long(cost_s))
                return
            self.decoders = (compiling.CompiledOrEager(self.pipe.vae.decoder, "Compiling the VAE decoder", fullgraph=True),
                             compiling.CompiledOrEager(self.pipe.vocoder, "Compiling the vocoder", fullgraph=True))
        eager = (self.pipe.vae.decoder, self.pipe.vocoder)

        def apply():
            self.pipe.vae.decoder, self.pipe.vocoder = self.decoders

        def undo():
            self.pipe.vae.decoder, self.pipe.vocoder = eager
        self.with_change(label, "compiled", apply, undo)

    def fresh_pipeline(self, dtype: torch.dtype):
        """Another pipeline in ``dtype`` at rung 6's settings, eager (for a precision the ladder's is not in)."""
        from diffusers import DPMSolverMultistepScheduler

        pipe = load_pipeline(self.model, torch_dtype=dtype, device=self.device)
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        return pipe

    def bfloat16(self) -> None:
        """bfloat16 weights against the ladder's float16 on a GPU that computes it; on a CPU with AVX512-BF16 or
        AMX, where the ladder already runs bfloat16 weights, float32 weights under bfloat16 autocast instead."""
        section, dtype = "techniques", self.pipe.dtype
        if self.device.type == "cuda" and precision.computes_natively(self.device, torch.bfloat16):
            label, load, autocast = "eager, bfloat16 weights instead of float16", torch.bfloat16, False
        elif self.device.type == "cpu" and dtype == torch.bfloat16:
            label, load, autocast = "eager, float32 weights + bfloat16 autocast instead of bfloat16 weights", \
                torch.float32, True
        else:
            self.skip("bfloat16", section, precision.why_not(self.device, torch.bfloat16)
                      if not precision.computes_natively(self.device, torch.bfloat16)
                      else f"the ladder's pipeline is {dtype}; notebook 10 compares the two forms")
            return
        cost_s = self.cost.load_s + 4 * self.clip_s(self.steps)
        if not self.deadline.fits(cost_s):
            self.skip(label, section, self.too_long(cost_s))
            return
        other = self.fresh_pipeline(load)
        try:
            if autocast:
                self.autocast = lambda: precision.autocast_for(self.device, torch.float32)
            self.measure(label, section, group="eager", pipe=other, learn=False, fixed_cost_s=0)
        finally:
            self.autocast = nullcontext
            del other
            gc.collect()

    def int8(self) -> None:
        section, unet = "techniques", self.pipe.unet
        try:
            if self.device.type == "cpu":
                if unet.dtype != torch.float32:
                    self.skip("int8", section, f"PyTorch's dynamic int8 quantises float32 layers; this UNet is "
                                               f"{_dtype_name(self.pipe)} (rung 4)")
                    return
                label, quantized = "eager + UNet linear layers in dynamic int8", quantizing.dynamic_int8(unet)
            else:
                label, quantized = "eager + UNet int8 weight-only (torchao)", quantizing.torchao_int8_weight_only(unet)
        except QuantizationUnavailableError as error:
            self.skip("int8", section, str(error))
            return
        self.with_change(label, "eager", lambda: setattr(self.pipe, "unet", quantized),
                         lambda: setattr(self.pipe, "unet", unet))

    def tf32(self) -> None:
        section = "techniques"
        if self.device.type != "cuda":
            self.skip("TF32", section, "TF32 is a mode of NVIDIA tensor cores (Ampere and newer)")
            return
        cost_s = self.cost.load_s + 6 * self.cost.clip_s(self.steps) * 1.5  # two eager float32 measurements
        if not self.deadline.fits(cost_s):
            self.skip("TF32", section, self.too_long(cost_s))
            return
        other = self.fresh_pipeline(torch.float32)
        try:
            self.measure("float32 eager (TF32's baseline)", section, group="float32", baseline=True, pipe=other,
                         learn=False)
            with precision.tf32():
                self.measure("float32 eager + TF32", section, group="float32", pipe=other, learn=False)
        finally:
            del other
            gc.collect()

    # ---- 4. schedulers, 5. throughput -----------------------------------------------------
    def schedulers(self) -> None:
        from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

        original = self.pipe.scheduler
        for scheduler_class in (DPMSolverMultistepScheduler, UniPCMultistepScheduler):
            for steps in sorted({settings.steps(wanted) for wanted in (10, 15, 20)}):
                name = scheduler_class.__name__

                def run(scheduler_class=scheduler_class, steps=steps, name=name):
                    self.pipe.scheduler = scheduler_class.from_config(original.config)
                    try:
                        self.measure(f"{name} {steps} steps", "schedulers", steps=steps, scheduler=name,
                                     repeats=3 if self.compiled_unet else 2, learn=False)
                    finally:
                        self.pipe.scheduler = original
                self.item(f"{name} {steps} steps", "schedulers", run)

    def throughput(self) -> None:
        """Clips per second against the batch, as notebook 11 measures it: the UNet eager (compiled, each new
        batch would compile and record CUDA graphs again)."""
        if self.eager_unet is not None:
            self.pipe.unet = self.eager_unet
        for batch in (1, 4, 16):
            self.item(f"batch {batch}", "throughput", lambda batch=batch: self.measure(
                f"batch of {batch}, UNet eager", "throughput", batch=batch, learn=False))

    def run(self) -> None:
        self.machine()
        self.measure_peaks()
        write_summary(self.out)
        self.load()
        write_summary(self.out)
        self.ladder()
        self.techniques()
        self.schedulers()
        self.throughput()


@contextmanager
def eager_modules(pipe):
    """The pipeline with its compiled modules swapped for their eager selves inside the block."""
    swapped = []
    for owner, name in ((pipe, "unet"), (pipe.vae, "decoder"), (pipe, "vocoder")):
        module = getattr(owner, name)
        eager = module.eager if isinstance(module, compiling.CompiledOrEager) else getattr(module, "_orig_mod", module)
        if eager is not module:
            setattr(owner, name, eager)
            swapped.append((owner, name, module))
    try:
        yield pipe
    finally:
        for owner, name, module in swapped:
            setattr(owner, name, module)


def _classic_attention():
    from diffusers.models.attention_processor import AttnProcessor

    return AttnProcessor()


def _dtype_name(pipe) -> str:
    return str(pipe.unet.dtype).removeprefix("torch.")


def versions() -> dict[str, str]:
    """The versions that decide a speed figure, and torchao's if installed."""
    found = {"torch": torch.__version__, "cuda": torch.version.cuda or "none",
             "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none"}
    for name in ("diffusers", "transformers", "accelerate", "numpy", "torchao", "triton"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


# --------------------------------------------------------------------------------------------
# The summary, from the results file alone
# --------------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return "" if value is None else str(value)
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(cell(value) for value in row) + " |" for row in rows), ""]


def _stage_rows(split: dict, flops: dict | None, peaks: dict[str, float]) -> list[list]:
    peak = peaks.get(split.get("dtype", "float32"))
    rows = []
    for stage, seconds in [*split["seconds"].items(), ("everything else", split["other_s"])]:
        work = None
        if flops and stage in flops["flops"]:
            work = flops["flops"][stage] * (split["steps"] / flops["steps"] if stage == "UNet" else 1)
        rate = work / seconds if work and seconds > 0 else None
        rows.append([stage, split["calls"].get(stage), seconds, f"{seconds / split['total_s']:.1%}",
                     work / 1e9 if work else None, rate / 1e12 if rate else None,
                     f"{rate / peak:.1%}" if rate and peak else None])
    rows.append(["one generation", None, split["total_s"], "100%", None, None, None])
    return rows


def summarize(rows: list[dict]) -> str:
    """The markdown summary of a results file's rows: what ran, on what, what it measured, what it skipped."""
    first = lambda kind: next((row for row in rows if row.get("kind") == kind), None)  # noqa: E731
    machine, load, end = first("machine"), first("load"), first("end")
    lines = ["# Benchmark: the course's measurements in one process", ""]
    if machine is None:
        return "\n".join(lines + ["Nothing was written yet."])
    status = ("completed" if end and end.get("status") == "completed" else
              f"stopped: {end['status']}" if end else "still running, or stopped from outside (no end row)")
    kind = load["checkpoint_kind"] if load else "not loaded yet"
    kind_text = {"real": "real (trained weights)", "full-size": "full-size random weights (the real shapes: real "
                 "speed and memory; noise for sound)", "tiny": "tiny random weights (a dry run: its timings say "
                 "nothing about the real model)"}.get(kind, kind)
    settings_text = (f"{machine['audio_seconds']} s clips, DDIM {machine['ddim_steps']}, DPM-Solver++ "
                     f"{machine['dpm_steps']}" + (" (smoke mode: measures nothing)" if machine["smoke"] else
                                                  " (CPU profile)" if machine["cpu_profile"] else " (full settings)"))
    versions_text = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    device = machine["device_name"] + (f", CUDA capability {machine['cuda_capability']}, "
                                       f"{machine['gpu_memory_gib']} GiB" if "cuda_capability" in machine else "")
    lines += [f"- **command**: `{machine['command']}`",
              f"- **device**: {device}; Python {machine['python']}; {machine['cpu_count']} CPU cores",
              f"- **versions**: {versions_text}",
              f"- **model**: `{machine['model']}`: {kind_text}",
              f"- **settings**: {settings_text}",
              f"- **run**: started {machine['started_at']}, deadline {machine['deadline_s']} s; {status}"
              + (f" after {end['t_s']:.0f} s" if end else ""), ""]
    peaks = {row["dtype"]: row["tflops"] * 1e12 for row in rows if row.get("kind") == "peak"}
    if peaks:
        lines += ["## Measured peak of a matrix product", ""]
        lines += _table(["precision", "TFLOP/s"], [[name, value / 1e12] for name, value in peaks.items()])
    measurements = [row for row in rows if row.get("kind") == "measurement"]
    ladder = [row for row in measurements if row.get("section") == "ladder"]
    if ladder:
        base = ladder[0]["median_s"]
        lines += ["## The ladder (notebook 08)", ""]
        table, previous = [], None
        for row in ladder:
            table.append([row["configuration"], row["dtype"], row["steps"], row["median_s"], row["spread_s"],
                          f"{base / row['median_s']:.1f}x", f"{previous / row['median_s']:.2f}x" if previous else "",
                          row.get("first_call_s"), row["peak_memory_gib"]])
            previous = row["median_s"]
        lines += _table(["rung", "dtype", "steps", "median s", "spread s", "speed-up", "x previous",
                         "first call s", "peak GiB"], table)
        last = ladder[-1]
        ratio = base / last["median_s"]
        lines.append(f"**Targets** (issue 16): rung {last['rung']} against rung {ladder[0]['rung']}: {ratio:.1f}x "
                     f"(target {TARGET_SPEEDUP:.0f}x: {'met' if ratio >= TARGET_SPEEDUP else 'not met'}); "
                     f"one {last['audio_seconds']} s clip at rung {last['rung']}, prompt encoding included: "
                     f"{last['median_s'] * 1000:.0f} ms (target {TARGET_CLIP_MS:.0f} ms for 10.24 s on an H100/H200"
                     + (f": {'met' if last['median_s'] * 1000 <= TARGET_CLIP_MS else 'not met'})."
                        if last["audio_seconds"] == settings.AUDIO_LENGTH_S else ": not this run's length).")
                     + (f" Rung 1 and the last rung differ in steps ({ladder[0]['steps']} and {last['steps']})."
                        if ladder[0]["steps"] != last["steps"] else ""))
        lines.append("")
    splits = [row for row in rows if row.get("kind") == "stages"]
    flops = {row["label"]: row for row in rows if row.get("kind") == "flops"}
    for split in splits:
        counted = flops.get(split["label"]) or flops.get("6")
        lines += [f"## Where rung {split['label']}'s time goes ({split['method']}, {split['dtype']}, "
                  f"{split['steps']} steps)", ""]
        lines += _table(["stage", "calls", "seconds", "share", "GFLOP", "TFLOP/s", "of peak"],
                        _stage_rows(split, counted, peaks))
        lines.append(f"UNet per step {split['per_step_s']:.4f} s; fixed part {split['fixed_s']:.3f} s. One more "
                     "generation with every stage timed, beside the medians above" + (
                         "; CUDA events include the GPU's idle time between a stage's kernels" if
                         split["method"] == "CUDA events" else "") + ". FLOPs: matrix products, convolutions and "
                     "attention, counted on the eager modules (2 steps; the UNet's scaled to the split's steps).")
        lines.append("")
    techniques = [row for row in measurements if row.get("section") == "techniques"]
    if techniques:
        lines += ["## Notebook 10's techniques, each against its own baseline", ""]
        table = []
        for group in dict.fromkeys(row["group"] for row in techniques):
            members = [row for row in techniques if row["group"] == group]
            baselines = [row for row in members if row.get("baseline")]
            same = [row for row in measurements for base in baselines if row["configuration"] == base.get("same_as")]
            floor = noise_floor_s(*[_timing(row) for row in baselines + same]) if baselines else None
            base = baselines[0]["median_s"] if baselines else None
            for row in members:
                versus = ("baseline" if row.get("baseline") else
                          speedup_text(base, row["median_s"], floor) if base else "no baseline measured")
                table.append([group, row["configuration"], row["median_s"], row["spread_s"], versus,
                              row["peak_memory_gib"]])
            if floor is not None:
                table.append([group, f"noise floor (the baseline measured {len(baselines + same)} times)", floor,
                              None, None, None])
        lines += _table(["group", "technique", "median s", "spread s", "vs its baseline", "peak GiB"], table)
        lines.append("A difference no larger than the group's noise floor (the largest spread, or gap between the "
                     "baseline's repeats) reads \"within noise\". Peak memory on a CPU is the process's resident "
                     "memory, which only grows over a run.")
        lines.append("")
    schedulers = [row for row in measurements if row.get("section") == "schedulers"]
    if schedulers:
        lines += ["## Fewer steps: DPM-Solver++ and UniPC", ""]
        lines += _table(["scheduler", "steps", "median s", "spread s"],
                        [[row["scheduler"], row["steps"], row["median_s"], row["spread_s"]] for row in schedulers])
    throughput = [row for row in measurements if row.get("section") == "throughput"]
    if throughput:
        lines += ["## Throughput against the batch (UNet eager, as notebook 11)", ""]
        lines += _table(["batch", "s per call", "s per clip", "clips per s", "peak GiB"],
                        [[row["batch"], row["median_s"], row["median_s"] / row["batch"],
                          row["batch"] / row["median_s"], row["peak_memory_gib"]] for row in throughput])
    skipped = [row for row in rows if row.get("kind") == "skipped"]
    errors = [row for row in rows if row.get("kind") == "error"]
    lines += ["## Skipped", ""]
    lines += [f"- {row['item']}: {row['reason']}" for row in skipped] or ["- nothing"]
    lines.append("")
    if errors:
        lines += ["## Errors (each item that failed; the run went on)", ""]
        lines += [f"- {row['item']}: {row['error']}" for row in errors]
        lines.append("")
    notes = [row for row in measurements if row.get("note")]
    if notes:
        lines += ["## Notes", ""] + [f"- {row['configuration']}: {row['note']}" for row in notes] + [""]
    lines.append(f"Every row is in `{RESULTS_FILE}`, one JSON object per line.")
    return "\n".join(lines) + "\n"


def _timing(row: dict) -> Timing:
    return Timing(label=row["configuration"], device="", runs_s=row.get("runs_s") or [row["median_s"]])


def write_summary(out: Path) -> Path:
    """Write ``out/summary.md`` from ``out/results.jsonl`` (atomically: a reader never sees half of it)."""
    path = Path(out) / SUMMARY_FILE
    partial = path.with_suffix(".md.partial")
    partial.write_text(summarize(read_rows(Path(out) / RESULTS_FILE)))
    os.replace(partial, path)
    return path


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
START_MONOTONIC = time.monotonic()


def process_age_s() -> float:
    """Seconds since this process started (its imports count against the deadline too)."""
    try:
        import psutil

        return max(time.time() - psutil.Process().create_time(), 0.0)
    except Exception:  # no psutil, or no process table: count from this module's import
        return time.monotonic() - START_MONOTONIC


@contextmanager
def alarm_at(deadline: Deadline):
    """Raise :class:`DeadlineReached` in the main thread if the run is still going at the deadline (a backstop for
    an item that ran over its estimate), or when the process is told to stop (SIGTERM, as ``timeout`` sends): the
    run then writes its end row and summary. POSIX only; elsewhere the estimates alone keep the deadline."""
    usable = hasattr(signal, "setitimer") and threading_is_main()
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


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def command_line(argv: list[str]) -> str:
    """The command as run, with the course's variables that change what it measures."""
    names = (settings.MODEL_ENV, settings.SMOKE_ENV, settings.FULL_ENV)
    env = " ".join(f"{name}={shlex.quote(os.environ[name])}" for name in names if os.environ.get(name))
    return (env + " " if env else "") + "python -m helpers.bench " + shlex.join(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadline", type=float, required=True, metavar="SECONDS",
                        help="end by then, counted from the start of this process (skipping what would not fit)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help=f"folder for {RESULTS_FILE} and {SUMMARY_FILE} (created; rows are appended)")
    parser.add_argument("--model", default=None, help=f"checkpoint: a hub id, a folder, tiny or full-size "
                                                      f"(default: ${settings.MODEL_ENV}, else {settings.DEFAULT_MODEL_ID})")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best one here)")
    parser.add_argument("--summarize", action="store_true", help="only write DIR's summary.md again from its results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarize:
        print(write_summary(args.out).read_text())
        return 0
    deadline = Deadline(time.monotonic() + args.deadline - process_age_s())
    bench = Bench(out=args.out, deadline=deadline, model=args.model or settings.model_id(),
                  device=torch.device(args.device or default_device()), command=command_line(argv))
    status, code = "completed", 0
    try:
        with alarm_at(deadline):
            bench.run()
    except DeadlineReached as stop:
        status = str(stop)
    except CourseError as error:  # a set-up problem: one line that says what to do
        status, code = f"could not start: {error}", 2
        print(f"error: {error}", file=sys.stderr)
    except BaseException as error:  # a bug, or Ctrl-C: the file says so, then the traceback
        bench.write("end", status=f"failed: {type(error).__name__}: {error}", left_s=round(deadline.left_s(), 1))
        write_summary(args.out)
        raise
    bench.write("end", status=status, left_s=round(deadline.left_s(), 1))
    summary = write_summary(args.out)
    print(f"{status}; results: {bench.path}; summary: {summary}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
