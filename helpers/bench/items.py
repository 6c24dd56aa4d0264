"""The items of the benchmark, in the order of what a GPU learner came for, each written down the moment it exists.

1. The machine: device, host CPU and its yardstick, versions, and the peak of a large matrix product.
2. The recipe's rungs, on one pipeline in half precision whose UNet is compiled at once: rung 6 (DPM-Solver++ 20,
   five timed runs) and its stage split, rung 5 (DDIM 200 on the same compiled UNet, no recompile), rung 7
   (beyond the blog, the same audio) and its split, rung 8 (the approximations: 10 steps, deep features reused), rung 6 again (the repeated baseline: the ladder's noise floor), each stage's
   FLOPs.
3. The blog's eager rungs 1-4, on a float32 pipeline (rung 4: the half-precision one, eager): each timed at two
   short step counts and extrapolated to the full count along the straight line they draw (a DDIM step costs
   the same at any count), labelled so.
4. Notebook 10's changes, each alternated with its own baseline (A B A B): compiled ones first, then the
   schedulers on the compiled UNet, then the eager ones (which change the UNet's modules, so they come after
   everything that replays the compiled UNet), TF32, the throughput against the batch.
5. Rung 1 once at the full step count, to check the extrapolation, when time is left.

Every item asks :mod:`helpers.bench.schedule` whether it fits before the deadline, and :class:`Engine` for the
device work; an item that fails is written down and the run goes on.
"""

from __future__ import annotations

import os
import platform
import time
import traceback
from statistics import median
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from helpers.bench.engine import Change, Clip, Engine
from helpers.bench.schedule import (Clock, CostModel, Deadline, DeadlineReached, StepCosts,
                                    compile_prior_s, cpu_model, decoders_prior_s, fit_step_costs, host_yardstick_s, repeats_that_fit)
from helpers import recipe
from helpers.bench.summary import RESULTS_FILE, versions, write_summary
from helpers.results import append_row, device_name
from helpers.timing import Timing

DPM, DDIM, UNIPC = "DPMSolverMultistepScheduler", "DDIMScheduler", "UniPCMultistepScheduler"
RUNG6_REPEATS, PAIRS = 5, 4  # rung 6: five timed runs; a change: four runs, each beside a run of its baseline


def short_counts(full_steps: int) -> tuple[int, int]:
    """The two short DDIM step counts an eager rung is timed at: 2 steps and a fifth of the full count (200 -> 2 and
    40). Far apart, so that the runs' noise moves the line's slope little: read at 200 steps, an error in the
    difference of the two timings is multiplied by 200 / 38, about 5, where 10 and 20 steps would multiply it by 20."""
    return max(2, full_steps // 100), max(4, full_steps // 5)


@dataclass
class Bench:
    """One benchmark run: where rows go, the deadline, the engine that does the device work, what it measured."""

    out: Path
    deadline: Deadline
    engine: Engine
    command: str
    model: str
    device: torch.device
    seconds: float  # audio per clip
    ddim_steps: int  # the blog's 200, or the profile's
    dpm_steps: int  # the blog's 20, or the profile's
    clock: Clock = time.monotonic
    host_yardstick: Callable[[], float] = host_yardstick_s
    settings_row: dict = field(default_factory=dict)  # what the machine row says of the settings (smoke, profile)
    cost: CostModel = field(default_factory=CostModel)
    yardstick_s: float | None = None
    half: object = None  # the recipe's pipeline: float16 on a GPU (bfloat16 on a CPU that computes it)
    full: object = None  # the float32 pipeline of rungs 1-3 (and TF32's, and the CPU's autocast)
    compiled: bool = False
    decoders: list = field(default_factory=list)  # the compiled VAE decoder and vocoder, once made
    held_elsewhere_gib: dict = field(default_factory=dict)  # id(pipe) -> memory other pipelines held at its load
    started: float = field(default=0.0)

    def __post_init__(self):
        self.started = self.clock()

    @property
    def path(self) -> Path:
        return self.out / RESULTS_FILE

    # ---- writing ------------------------------------------------------------------------------
    def write(self, kind: str, **fields) -> dict:
        row = {"kind": kind, **fields, "t_s": round(self.clock() - self.started, 2),
               "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        append_row(row, self.path)
        return row

    def skip(self, item: str, section: str, reason: str) -> None:
        print(f"skipped: {item}: {reason}", flush=True)
        self.write("skipped", item=item, section=section, reason=reason)

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

    # ---- measuring ------------------------------------------------------------------------------
    def unet(self, pipe) -> str:
        return "compiled" if self.engine.is_compiled(pipe) else "eager"

    def cost_kind(self, pipe) -> str:
        """What the cost model keeps apart: eager or compiled, and the precision."""
        return f"{self.unet(pipe)} {self.engine.dtype_name(pipe)}"

    def estimate_s(self, pipe, clip: Clip) -> float | None:
        return self.cost.clip_s(clip.steps, self.cost_kind(pipe), clip.batch)

    def peak_of(self, pipe, peak_gib: float) -> float:
        """A row's own peak: less what other pipelines held when this one loaded."""
        return round(max(peak_gib - self.held_elsewhere_gib.get(id(pipe), 0.0), 0.0), 3)

    def measure(self, label: str, section: str, pipe, clip: Clip, *, repeats: int, warmup: int = 1,
                first_extra_s: float = 0.0, learn: bool = True, **fields) -> Timing | None:
        """Time ``warmup`` calls (kept apart), then up to ``repeats`` calls that fit, and write the row. The number
        of timed calls is decided after the warm-up, from what it took."""
        estimate = self.estimate_s(pipe, clip)
        if estimate is not None and not self.deadline.fits(first_extra_s + (warmup + 1) * estimate):
            self.skip(label, section, self.deadline.too_long(first_extra_s + (warmup + 1) * estimate))
            return None
        print(f"{label}: {warmup} warm-up + up to {repeats} timed", flush=True)
        warm = self.engine.time(pipe, clip, warmup)[0] if warmup else []
        # one timed call if it fits (the warm-up may have paid one-off costs: the estimate, if lower, decides) ...
        next_s = min(warm[-1], estimate) if warm and estimate is not None else warm[-1] if warm else estimate or 0.0
        if not self.deadline.fits(next_s):
            self.skip(label, section, f"after its warm-up: {self.deadline.too_long(next_s)}")
            return None
        runs_s, peak = self.engine.time(pipe, clip, 1)
        # ... then as many more as fit, judged by what that call took
        more = repeats_that_fit(self.deadline, runs_s[0], repeats=repeats - 1, least=0) if repeats > 1 else 0
        if more:
            more_s, more_peak = self.engine.time(pipe, clip, more)
            runs_s, peak = runs_s + more_s, max(peak, more_peak)
        runs = len(runs_s)
        timing = Timing(label=label, device=str(self.device), runs_s=runs_s, warmup_s=warm,
                        audio_seconds=self.seconds * clip.batch)
        print(f"  {timing}", flush=True)
        if runs < repeats:
            fields["note"] = f"{runs} timed run(s) instead of {repeats}, to end before the deadline"
        self.write("measurement", configuration=label, section=section, unet=self.unet(pipe),
                   dtype=self.engine.dtype_name(pipe), scheduler=self.engine.scheduler_name(pipe), steps=clip.steps,
                   batch=clip.batch, audio_seconds=self.seconds * clip.batch, median_s=timing.median_s,
                   spread_s=timing.spread_s, runs_s=runs_s, first_call_s=warm[0] if warm else None,
                   peak_memory_gib=self.peak_of(pipe, peak), method=f"measured, {runs} run(s)", **fields)
        if learn:
            self.cost.learn(self.cost_kind(pipe), clip.steps, timing.median_s / clip.batch)
        return timing

    def extrapolate(self, label: str, pipe, clip: Clip, **fields) -> None:
        """An eager rung at the full DDIM count, from two short counts: their medians draw the line (fixed part +
        seconds per step), read at the full count. Each pair of runs gives its own reading: their range is the
        row's spread."""
        few, more = short_counts(clip.steps)
        if clip.steps <= more:  # a smoke or profile count this short is measured as it is
            self.measure(label, "ladder", pipe, clip, repeats=2, **fields)
            return
        short = {}
        for steps in (few, more):
            estimate = self.cost.clip_s(steps, self.cost_kind(pipe))
            if estimate is not None and not self.deadline.fits(3 * estimate):
                self.skip(label, "ladder", f"timing it at {steps} steps {self.deadline.too_long(3 * estimate)}")
                return
            warm = self.engine.time(pipe, Clip(steps, negative=clip.negative), 1)[0]
            runs_s, peak = self.engine.time(pipe, Clip(steps, negative=clip.negative), 2)
            short[steps] = (runs_s, peak, warm[0])
            self.cost.learn(self.cost_kind(pipe), steps, median(runs_s))
        line = fit_step_costs(few, median(short[few][0]), more, median(short[more][0]))
        readings = [fit_step_costs(few, a, more, b).clip_s(clip.steps) for a, b in zip(short[few][0], short[more][0])]
        self.cost.learn_line(self.cost_kind(pipe), line)
        at_full_s = line.clip_s(clip.steps)
        print(f"{label}: {at_full_s:.3f} s at {clip.steps} steps, extrapolated from {few} and {more} steps "
              f"(fixed {line.fixed_s:.3f} s + {line.per_step_s:.4f} s a step)", flush=True)
        self.write("measurement", configuration=label, section="ladder", unet=self.unet(pipe),
                   dtype=self.engine.dtype_name(pipe), scheduler=self.engine.scheduler_name(pipe), steps=clip.steps,
                   batch=1, audio_seconds=self.seconds, median_s=at_full_s, spread_s=max(readings) - min(readings),
                   runs_s=readings, first_call_s=short[few][2],
                   peak_memory_gib=self.peak_of(pipe, max(short[few][1], short[more][1])),
                   method=f"extrapolated from {few} and {more} steps",
                   fit={"fixed_s": line.fixed_s, "per_step_s": line.per_step_s,
                        "runs_s": {str(steps): value[0] for steps, value in short.items()}}, **fields)

    def versus(self, label: str, group: str, base, clip: Clip, change: Change | None = None, *, other=None,
               other_clip: Clip | None = None, first_extra_s: float = 0.0, **fields) -> None:
        """A change against its baseline, alternated: base, change, base, change, ... (PAIRS of each after one
        warm-up of each), so that a drift of the machine touches both alike. ``change`` is applied to ``base``
        around each of its runs and undone after; or ``other`` is another pipeline (``other_clip``: its clip)."""
        other, other_clip = other if other is not None else base, other_clip or clip
        estimate = self.estimate_s(base, clip)
        if estimate is not None and not self.deadline.fits(first_extra_s + 2 * (PAIRS + 1) * estimate):
            self.skip(label, "techniques", self.deadline.too_long(first_extra_s + 2 * (PAIRS + 1) * estimate))
            return

        def changed(calls: int) -> tuple[list[float], float]:
            if change:
                change.apply()
            try:
                return self.engine.time(other, other_clip, calls)
            finally:
                if change:
                    change.undo()

        print(f"{label}: against its baseline, alternated", flush=True)
        base_warm, changed_warm = self.engine.time(base, clip, 1)[0], changed(1)[0]
        pair_s = base_warm[0] + min(changed_warm[0], base_warm[0] * 4)
        pairs = repeats_that_fit(self.deadline, pair_s, repeats=PAIRS, least=2)
        if pairs == 0:
            self.skip(label, "techniques", f"after its warm-up: {self.deadline.too_long(2 * pair_s)}")
            return
        base_runs, changed_runs, peaks = [], [], []
        for _ in range(pairs):
            base_runs += self.engine.time(base, clip, 1)[0]
            runs, peak = changed(1)
            changed_runs += runs
            peaks.append(peak)
        timing = Timing(label=label, device=str(self.device), runs_s=changed_runs, warmup_s=changed_warm,
                        audio_seconds=self.seconds * other_clip.batch)
        print(f"  {timing}; its baseline {median(base_runs):.3f} s", flush=True)
        if pairs < PAIRS:
            fields["note"] = f"{pairs} pairs of runs instead of {PAIRS}, to end before the deadline"
        self.write("measurement", configuration=label, section="techniques", group=group, unet=self.unet(other),
                   dtype=self.engine.dtype_name(other), scheduler=self.engine.scheduler_name(other),
                   steps=other_clip.steps, batch=other_clip.batch, audio_seconds=self.seconds * other_clip.batch,
                   median_s=timing.median_s, spread_s=timing.spread_s, runs_s=changed_runs,
                   first_call_s=changed_warm[0], baseline_runs_s=base_runs, baseline_median_s=median(base_runs),
                   peak_memory_gib=self.peak_of(other, max(peaks)), method=f"alternated with its baseline, {pairs} "
                   "pairs", **fields)

    def split(self, label: str, pipe, clip: Clip, learn: bool = True) -> None:
        """One more generation with every stage timed (CUDA events on a GPU): where the time goes."""
        estimate = self.estimate_s(pipe, clip) or 0.0
        if not self.deadline.fits(1.5 * estimate):
            self.skip(f"stage split of rung {label}", "ladder", self.deadline.too_long(1.5 * estimate))
            return
        split = self.engine.split(pipe, clip)
        once = sum(seconds for stage, seconds in split.seconds.items() if stage != "UNet")
        per_step = split.seconds["UNet"] / clip.steps
        if learn:  # the split of a plain rung draws its kind's line; rung 7's changes are not its kind's
            self.cost.learn_line(self.cost_kind(pipe), StepCosts(split.total_s - split.seconds["UNet"], per_step))
        print(f"stage split of rung {label} ({self.unet(pipe)} UNet): UNet {split.seconds['UNet']:.3f} s of "
              f"{split.total_s:.3f} s", flush=True)
        self.write("stages", label=label, section="ladder", unet=self.unet(pipe), steps=clip.steps,
                   dtype=self.engine.dtype_name(pipe), seconds=split.seconds, calls=split.calls, total_s=split.total_s,
                   other_s=split.other_s, once_per_clip_s=once, per_step_s=per_step,
                   method="CUDA events" if self.device.type == "cuda" else "synchronise and clock")

    # ---- 1. the machine ---------------------------------------------------------------------------
    def profile(self, label: str, pipe, clip: Clip) -> None:
        """One clip under torch.profiler, per step: kernels launched, the device's busy time against the step's, so
        that a host-bound loop and a kernel-bound one read apart (the summary sets the step against its FLOP floor)."""
        estimate = 3 * (self.estimate_s(pipe, clip) or 0.0) + 30  # the profiler's own cost, and reading its events
        if not self.deadline.fits(estimate):
            self.skip(f"profile of rung {label}", "ladder", self.deadline.too_long(estimate))
            return
        profile = self.engine.profile(pipe, clip)
        print(f"profile of rung {label}: {profile}", flush=True)
        self.write("profile", label=label, section="ladder", unet=self.unet(pipe), dtype=self.engine.dtype_name(pipe),
                   **asdict(profile), verdict=profile.verdict())

    def machine(self) -> None:
        self.yardstick_s = self.host_yardstick()
        row = {"device": str(self.device), "device_name": device_name(self.device), "host_cpu": cpu_model(),
               "host_yardstick_s": round(self.yardstick_s, 4), "python": platform.python_version(),
               "platform": platform.platform(), "cpu_count": os.cpu_count(), "versions": versions(),
               "command": self.command, "deadline_s": round(self.deadline.left_s()), "model": self.model,
               "audio_seconds": self.seconds, "ddim_steps": self.ddim_steps, "dpm_steps": self.dpm_steps,
               "compile_prior_s": round(compile_prior_s(self.yardstick_s)), **self.settings_row,
               "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if self.device.type == "cuda":
            capability = torch.cuda.get_device_capability(self.device)
            row.update(cuda_capability=f"{capability[0]}.{capability[1]}",
                       gpu_memory_gib=round(torch.cuda.get_device_properties(self.device).total_memory / 1024**3, 1))
        self.write("machine", **row)

    def peaks(self) -> None:
        """The device's own yardstick: a large matrix product in each precision it computes natively."""
        for kind in self.engine.peak_kinds():
            if not self.deadline.fits(10):
                self.skip(f"peak {kind}", "machine", self.deadline.too_long(10))
                continue
            tflops = self.engine.peak_tflops(kind)
            if tflops is None:
                self.skip(f"peak {kind}", "machine", self.engine.why_not(kind))
                continue
            self.write("peak", dtype=kind, tflops=tflops)

    def load(self, dtype: torch.dtype, why: str):
        if not self.deadline.fits(self.cost.load_s):
            self.skip(f"loading a {str(dtype).removeprefix('torch.')} pipeline", "ladder",
                      self.deadline.too_long(self.cost.load_s))
            return None
        held = self.engine.held_gib()
        start = self.clock()
        pipe = self.engine.load(dtype)
        load_s = self.clock() - start
        self.cost.load_s = max(load_s, 1.0)  # the next load is estimated from this one
        if self.half is not None or self.full is not None:
            self.held_elsewhere_gib[id(pipe)] = held
        from helpers.checkpoints import describe_checkpoint

        checkpoint = describe_checkpoint(getattr(pipe, "name_or_path", self.model) or self.model)
        self.write("load", model=self.model, dtype=self.engine.dtype_name(pipe), why=why, load_s=load_s,
                   checkpoint_kind=checkpoint.kind, random_weights=checkpoint.random_weights,
                   held_elsewhere_gib=round(held, 3) if id(pipe) in self.held_elsewhere_gib else 0.0)
        return pipe

    # ---- 2. the recipe's rungs ----------------------------------------------------------------------
    def recipe_rungs(self) -> None:
        half = self.engine.half_dtype() or torch.float32
        self.half = self.load(half, "the recipe's rungs (5, 6, 7), compiled where it can be")
        if self.half is None:
            return
        pipe, dpm = self.half, Clip(self.dpm_steps)
        self.engine.set_scheduler(pipe, DPM)
        self.item("compiling the UNet", "ladder", self.compile)
        self.item("rung 6", "ladder", lambda: self.measure(
            f"6. + DPM-Solver++ {self.dpm_steps} steps", "ladder", pipe, dpm,
            repeats=RUNG6_REPEATS if self.compiled else 3, rung=6))
        self.item("stage split of rung 6", "ladder", lambda: self.split("6", pipe, dpm))
        self.item("rung 5", "ladder", self.rung5)
        self.item("rung 7", "ladder", self.rung7)
        self.item("rung 6 again", "ladder repeat", lambda: self.measure(  # the repeated baseline: the noise floor
            f"6. + DPM-Solver++ {self.dpm_steps} steps, again", "ladder repeat", pipe, dpm,
            repeats=RUNG6_REPEATS if self.compiled else 3, warmup=0, rung=6))
        self.item("FLOPs", "ladder", self.flops)

    def compile(self) -> None:
        ok, why = self.engine.can_compile()
        if not ok:
            self.skip("5. + torch.compile", "ladder", why)
            return
        prior = compile_prior_s(self.yardstick_s)
        if not self.deadline.fits(prior):
            self.skip("5. + torch.compile", "ladder", f"compiling the UNet first: {self.deadline.too_long(prior)}")
            return
        pipe, cache = self.half, self.engine.compile_cache()
        self.engine.compile_unet(pipe)
        print(f"compiling the UNet (mode='reduce-overhead', fullgraph=True) at its first call: about {prior:.0f} s "
              f"on this host with nothing cached; compile cache {cache['folder']}: {cache['graphs_found']} graph(s) "
              "found", flush=True)
        before = self.engine.cache_lookups()
        try:
            first_s = self.engine.first_call_s(pipe, Clip(self.dpm_steps))
        except Exception as error:
            from helpers import compiling

            if not compiling.is_compile_failure(error):
                raise
            self.engine.uncompile(pipe)
            cause = " ".join(str(error).split())[:300]
            self.skip("5. + torch.compile", "ladder",
                      f"compiling failed, the ladder goes on eager: {type(error).__name__}: {cause}")
            return
        self.compiled = True
        found = str(self.engine.cache_lookups() - before)
        self.write("compile", what="UNet, mode='reduce-overhead', fullgraph=True", first_call_s=first_s,
                   steps=self.dpm_steps, scheduler=DPM, prior_s=round(prior), host_yardstick_s=self.yardstick_s,
                   graphs=self.engine.graphs(), cache_folder=cache["folder"], cache=found)
        print(f"  first compiled call: {first_s:.1f} s (the prior said {prior:.0f} s); {found}", flush=True)

    def rung5(self) -> None:
        label = "5. + torch.compile"
        if not self.compiled:
            return  # compile() wrote why
        pipe = self.half
        self.engine.set_scheduler(pipe, DDIM)
        graphs = self.engine.graphs()
        try:
            timing = self.measure(label, "ladder", pipe, Clip(self.ddim_steps), repeats=3, rung=5)
        finally:
            self.engine.set_scheduler(pipe, DPM)
        if timing is not None:
            recompiled = self.engine.graphs() - graphs
            self.write("recompiles", label=label, new_graphs=recompiled,
                       note="none: DDIM reused the graphs compiled at DPM-Solver++" if recompiled == 0 else
                       "DDIM made Dynamo compile again: rung 5's first call is not comparable")

    def rung7(self) -> None:
        label, pipe = "7. beyond the blog", self.half
        compiles = self.compiled and not self.decoders
        prior = decoders_prior_s(self.yardstick_s) if compiles else 0.0
        changes = self.engine.apply_recipe(pipe)
        clip = Clip(self.dpm_steps, autocast=self.engine.recipe_autocast(pipe))
        try:
            timing = self.measure(label, "ladder", pipe, clip, repeats=RUNG6_REPEATS if self.compiled else 3,
                                  first_extra_s=prior, learn=False, rung=7, changes=changes)
            if timing is not None:
                self.split("7", pipe, clip, learn=False)
                self.item("rung 8", "ladder", lambda: self.rung8(pipe, clip.autocast, changes))
                self.item("profile of rung 7", "ladder", lambda: self.profile("7", pipe, clip))  # after rung 8's target
        finally:
            self.engine.remove_recipe(pipe, keep=self.decoders if compiles else None)

    def rung8(self, pipe, autocast, changes: list[str]) -> None:
        """Rung 8 on top of rung 7 (still applied): the approximations, labelled (fewer steps, deep features reused);
        its audio differs from rung 7's, unlike every rung before it."""
        steps = max(1, self.dpm_steps * recipe.RUNG_8_STEPS // 20)  # the blog's 10 of 20, or this run's share
        added = self.engine.apply_approximations(pipe)
        try:
            self.measure(f"8. approximations: DPM-Solver++ {steps} steps, deep features reused", "ladder", pipe,
                         Clip(steps, autocast=autocast), repeats=RUNG6_REPEATS if self.compiled else 3, learn=False,
                         rung=8, changes=changes + added)
        finally:
            self.engine.remove_approximations(pipe)

    def flops(self) -> None:
        # the counter sees every operation from Python: several times a 2-step clip's time
        estimate = 10 * (self.cost.clip_s(2, self.cost_kind(self.half)) or 0.0)
        if not self.deadline.fits(estimate):
            self.skip("FLOPs", "ladder", self.deadline.too_long(estimate))
            return
        flops = self.engine.flops(self.half)
        print(f"FLOPs: {sum(flops.values()) / 1e9:.1f} GFLOP in a 2-step generation", flush=True)
        self.write("flops", label="6", steps=2, flops=flops)

    # ---- 3. the blog's eager rungs ------------------------------------------------------------------
    def blog_rungs(self) -> None:
        self.full = self.load(torch.float32, "the blog's rungs 1-3 (float32, eager)")
        ddim = self.ddim_steps
        if self.full is not None:
            full = self.full
            self.engine.set_scheduler(full, DDIM)
            self.engine.set_attention(full, classic=True)
            self.item("rung 1", "ladder", lambda: self.extrapolate(
                f"1. float32, DDIM {ddim}, classic attention", full, Clip(ddim, negative=False), rung=1))
            self.item("rung 2", "ladder", lambda: self.extrapolate(
                "2. + negative prompt", full, Clip(ddim), rung=2))

            def rung3():
                self.engine.set_attention(full, classic=False)
                self.extrapolate("3. + SDPA attention", full, Clip(ddim), rung=3)
            self.item("rung 3", "ladder", rung3)
        self.item("rung 4", "ladder", self.rung4)

    def rung4(self) -> None:
        if self.half is None or self.engine.dtype_name(self.half) == "float32":
            self.skip("4. half precision", "ladder", self.engine.why_not("bfloat16"))
            return
        with self.engine.eager(self.half) as pipe:
            self.engine.set_scheduler(pipe, DDIM)
            try:
                self.extrapolate(f"4. {self.engine.dtype_name(pipe)}", pipe, Clip(self.ddim_steps), rung=4)
            finally:
                self.engine.set_scheduler(pipe, DPM)

    def rung1_at_full_count(self) -> None:
        """Rung 1 once at the full step count: how far the extrapolation is from a real run."""
        if self.full is None or self.ddim_steps <= short_counts(self.ddim_steps)[1]:
            return
        clip = Clip(self.ddim_steps, negative=False)
        self.engine.set_attention(self.full, classic=True)
        self.engine.set_scheduler(self.full, DDIM)
        try:
            self.measure(f"1. float32, DDIM {self.ddim_steps}, classic attention (one run to check the "
                         "extrapolation)", "ladder check", self.full, clip, repeats=1, warmup=0, rung=1, learn=False)
        finally:
            self.engine.set_attention(self.full, classic=False)

    # ---- 4. notebook 10 ------------------------------------------------------------------------------
    def compiled_techniques(self) -> None:
        if not self.compiled:
            return
        pipe, clip = self.half, Clip(self.dpm_steps)
        for change in self.engine.compiled_changes(pipe, self.decoders):
            compiles = ("decoder" in change.label and not self.decoders) or "CUDA graph" in change.label
            extra = decoders_prior_s(self.yardstick_s) if compiles else 0.0  # its first call compiles
            self.item(change.label, "techniques", lambda change=change, extra=extra: self.versus(
                change.label, "compiled", pipe, clip, change, first_extra_s=extra))

    def schedulers(self) -> None:
        pipe = self.half
        if pipe is None:
            return
        for name in (DPM, UNIPC):
            for steps in sorted({max(2, round(wanted * self.dpm_steps / 20)) for wanted in (10, 15, 20)}):

                def run(name=name, steps=steps):
                    self.engine.set_scheduler(pipe, name)
                    try:
                        self.measure(f"{name} {steps} steps", "schedulers", pipe, Clip(steps), repeats=3,
                                     learn=False, scheduler_name=name)
                    finally:
                        self.engine.set_scheduler(pipe, DPM)
                self.item(f"{name} {steps} steps", "schedulers", run)

    def eager_techniques(self) -> None:
        if self.half is None:
            return
        clip = Clip(self.dpm_steps)
        with self.engine.eager(self.half) as pipe:
            self.item("bfloat16", "techniques", lambda: self.bfloat16(pipe, clip))
            for change in self.engine.eager_changes(pipe):
                self.item(change.label, "techniques", lambda change=change: self.versus(
                    change.label, "eager", pipe, clip, change))

    def bfloat16(self, pipe, clip: Clip) -> None:
        """bfloat16 weights against the ladder's float16 on a GPU that computes it; on a CPU whose ladder already
        runs bfloat16 weights, float32 weights under bfloat16 autocast instead (the float32 pipeline of rungs 1-3)."""
        dtype = self.engine.dtype_name(pipe)
        if self.device.type == "cuda" and dtype == "float16" and self.engine.computes("bfloat16"):
            other = self.load(torch.bfloat16, "notebook 10: bfloat16 weights")
            if other is None:
                return
            self.engine.set_scheduler(other, DPM)
            try:
                self.versus("eager, bfloat16 weights instead of float16", "eager", pipe, clip, other=other)
            finally:
                self.held_elsewhere_gib.pop(id(other), None)
                self.engine.forget(other)
                del other
                self.engine.collect()
        elif self.device.type == "cpu" and dtype == "bfloat16" and self.full is not None:
            self.engine.set_scheduler(self.full, DPM)
            self.engine.set_attention(self.full, classic=False)
            self.versus("eager, float32 weights + bfloat16 autocast instead of bfloat16 weights", "eager", pipe,
                        clip, other=self.full, other_clip=Clip(clip.steps, autocast=torch.bfloat16))
        else:
            self.skip("bfloat16", "techniques", f"the ladder's pipeline is {dtype} here; notebook 10 compares "
                                                "bfloat16 with float16 on a GPU, autocast with weights on a CPU")

    def tf32(self) -> None:
        if self.device.type != "cuda":
            self.skip("TF32", "techniques", "TF32 is a mode of NVIDIA tensor cores (Ampere and newer)")
            return
        if self.full is None:
            self.skip("TF32", "techniques", "no float32 pipeline was loaded")
            return
        full = self.full
        self.engine.set_scheduler(full, DPM)
        self.engine.set_attention(full, classic=False)
        held = []

        def apply():
            held.append(self.engine.tf32())
            held[-1].__enter__()

        def undo():
            held.pop().__exit__(None, None, None)
        self.versus("float32 eager + TF32", "float32", full, Clip(self.dpm_steps), Change("TF32", apply, undo))

    def throughput(self) -> None:
        """Clips per second against the batch, the UNet eager (compiled, each new batch would compile again)."""
        if self.half is None:
            return
        with self.engine.eager(self.half) as pipe:
            for batch in (1, 4, 16):
                self.item(f"batch {batch}", "throughput", lambda batch=batch: self.measure(
                    f"batch of {batch}, UNet eager", "throughput", pipe, Clip(self.dpm_steps, batch=batch),
                    repeats=2, learn=False))

    def free_full(self) -> None:
        if self.full is not None:
            self.engine.forget(self.full)
            self.full = None
            self.engine.collect()

    def run(self) -> None:
        self.machine()
        self.peaks()
        write_summary(self.out)
        self.recipe_rungs()
        self.blog_rungs()
        self.compiled_techniques()
        self.schedulers()
        self.eager_techniques()
        self.item("TF32", "techniques", self.tf32)
        self.throughput()
        self.item("rung 1 at the full count", "ladder check", self.rung1_at_full_count)
        self.free_full()
