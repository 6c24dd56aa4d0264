"""python -m helpers.bench: the schedule on a fake clock (the 2026-12-04 H200's costs replayed), the compile it must
not start, the summary it writes, and one real run on the tiny checkpoint that ends by itself with a valid file."""

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import bench
from helpers.bench import Change
from helpers.bench.schedule import REFERENCE_YARDSTICK_S
from helpers.stages import STAGES, StageTimes, StepProfile

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


class ReplayEngine:
    """The device work replayed from measured costs: each call only advances the fake clock.

    Costs of 2026-12-04's H200 run (its host was the slow one): an eager float32 DDIM-200 clip 23.5 s, float16
    18.6 s; the UNet's first compiled call 138 s; a compiled DPM-Solver++ 20 clip 0.5 s; rung 7 0.27 s after its
    decoders' 33 s compile; a pipeline loads in 10 s.
    """

    LINES = {("eager", "float32"): (1.5, 0.110), ("eager", "float16"): (1.0, 0.088), ("eager", "bfloat16"): (1.0, 0.09),
             ("compiled", "float16"): (0.30, 0.010)}
    COMPILE_S, DECODERS_COMPILE_S, LOAD_S = 138.0, 33.0, 10.0

    def __init__(self, clock, compiles=True):
        self.clock, self.compiles, self.calls, self.graph_count = clock, compiles, [], 0
        self.device = torch.device("cuda")

    def _pipe_cost(self, pipe, clip):
        fixed, per_step = self.LINES[("compiled" if pipe.compiled else "eager", pipe.dtype)]
        if pipe.recipe:
            fixed = 0.07
        if pipe.dtype == "float32" and pipe.tf32:
            per_step *= 0.7
        return (fixed + per_step * clip.steps) * clip.batch

    def _spend(self, seconds):
        self.clock.now += seconds
        return seconds

    def load(self, dtype):
        self._spend(self.LOAD_S)
        return SimpleNamespace(dtype=str(dtype).removeprefix("torch."), compiled=False, scheduler="DDIMScheduler",
                               classic=False, recipe=False, tf32=False, first_compiled_call=True,
                               decoders_compiled=False)

    def forget(self, pipe):
        pass

    def collect(self):
        pass

    def held_gib(self):
        return 3.0

    def dtype_name(self, pipe):
        return pipe.dtype

    def set_attention(self, pipe, classic):
        pipe.classic = classic

    def set_scheduler(self, pipe, name):
        pipe.scheduler = name

    def scheduler_name(self, pipe):
        return pipe.scheduler

    def can_compile(self):
        return (True, "") if self.compiles else (False, "no Triton here")

    def compile_cache(self):
        return {"folder": "/cache", "graphs_found": 0}

    def cache_lookups(self):
        from helpers.compile_cache import Lookups

        return Lookups(misses=self.graph_count)

    def compile_unet(self, pipe):
        pipe.compiled = True

    def uncompile(self, pipe):
        pipe.compiled = False

    def is_compiled(self, pipe):
        return pipe.compiled

    @contextmanager
    def eager(self, pipe):
        was, pipe.compiled = pipe.compiled, False
        try:
            yield pipe
        finally:
            pipe.compiled = was

    def graphs(self):
        return self.graph_count

    def apply_recipe(self, pipe):
        pipe.recipe = True
        return ["prompts in one batch", "VAE decoder and vocoder compiled"]

    def remove_recipe(self, pipe, keep=None):
        pipe.recipe = False

    def recipe_autocast(self, pipe):
        return None

    def _call(self, pipe, clip):
        seconds = self._pipe_cost(pipe, clip)
        if pipe.compiled and pipe.first_compiled_call:
            pipe.first_compiled_call, self.graph_count = False, self.graph_count + 1
            seconds += self.COMPILE_S
        if pipe.recipe and pipe.compiled and not pipe.decoders_compiled:
            pipe.decoders_compiled = True
            seconds += self.DECODERS_COMPILE_S
        self.calls.append((pipe.dtype, pipe.compiled, pipe.scheduler, clip.steps))
        return self._spend(seconds)

    def first_call_s(self, pipe, clip):
        return self._call(pipe, clip)

    def time(self, pipe, clip, calls):
        return [self._call(pipe, clip) for _ in range(calls)], 3.0

    def split(self, pipe, clip):
        total = self._call(pipe, clip)
        seconds = {stage: 0.0 for stage in STAGES}
        seconds["UNet"] = 0.6 * total
        return StageTimes(seconds, {stage: 1 for stage in STAGES}, total, steps=clip.steps, device="cuda")

    def profile(self, pipe, clip):
        total = self._call(pipe, clip)  # a step busy a quarter of its time: host-bound
        return StepProfile("GPU kernels and copies", clip.steps, 900.0, 0.15 * total / clip.steps,
                           0.6 * total / clip.steps, 20_000, 0.3 * total, total)

    def flops(self, pipe):
        self._spend(2.0)
        return {stage: 1e9 for stage in STAGES}

    def peak_tflops(self, kind):
        self._spend(1.0)
        return 700.0

    def computes(self, kind):
        return True

    def peak_kinds(self):
        return ["float16", "bfloat16", "tf32", "float32"]

    def why_not(self, kind):
        return "never"

    def half_dtype(self):
        return torch.float16

    def compiled_changes(self, pipe, decoders):
        return [Change("compiled UNet + both prompts in one batch", lambda: None, lambda: None)]

    def eager_changes(self, pipe):
        return [Change(f"eager + change {n}", lambda: None, lambda: None) for n in range(6)]

    @contextmanager
    def _tf32(self):
        yield

    def tf32(self):
        return self._tf32()


def _replay(tmp_path, monkeypatch, left_s, compiles=True):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(total_memory=141e9))
    monkeypatch.setattr(bench.items, "write_summary", lambda out: None)  # written once at the end, below
    monkeypatch.setattr(bench.items, "device_name", lambda device: "NVIDIA H200 (replayed)")
    clock = FakeClock()
    engine = ReplayEngine(clock, compiles=compiles)
    run = bench.Bench(out=tmp_path, deadline=bench.Deadline(left_s, clock=clock), engine=engine,
                      command="python -m helpers.bench --deadline 485 --out x", model="full-size",
                      device=torch.device("cuda"), seconds=10.24, ddim_steps=200, dpm_steps=20, clock=clock,
                      host_yardstick=lambda: REFERENCE_YARDSTICK_S)
    run.run()
    return run, clock, _rows(tmp_path)


def _rows(path):
    return [json.loads(line) for line in (path / bench.RESULTS_FILE).read_text().splitlines()]


def test_the_schedule_replayed_with_the_12_04_costs_measures_rungs_5_6_7_and_their_splits(tmp_path, monkeypatch):
    run, clock, rows = _replay(tmp_path, monkeypatch, left_s=485.0)
    ladder = {row["rung"]: row for row in rows if row["kind"] == "measurement" and row["section"] == "ladder"}
    assert {5, 6, 7} <= set(ladder), [row for row in rows if row["kind"] == "skipped"]
    assert all(ladder[rung]["unet"] == "compiled" for rung in (5, 6, 7))
    assert len(ladder[6]["runs_s"]) >= 5 and ladder[5]["steps"] == 200 and ladder[5]["scheduler"] == "DDIMScheduler"
    assert {row["label"] for row in rows if row["kind"] == "stages"} >= {"6", "7"}
    assert all(row["unet"] == "compiled" for row in rows if row["kind"] == "stages")
    profile = next(row for row in rows if row["kind"] == "profile")  # rung 7's clip, per step
    assert profile["label"] == "7" and profile["verdict"].startswith("host-bound: the GPU waits 75% of each step")
    assert next(row for row in rows if row["kind"] == "recompiles")["new_graphs"] == 0
    assert next(row for row in rows if row["kind"] == "compile")["cache"] == "cold: 1 graph(s) compiled and stored"
    # the eager rungs came after, extrapolated from short counts, and the whole run ended before its deadline
    assert {1, 2, 3, 4} <= set(ladder)
    assert ladder[1]["method"] == "extrapolated from 2 and 40 steps"
    assert ladder[1]["median_s"] == pytest.approx(23.5, rel=0.01) and ladder[4]["median_s"] == pytest.approx(18.6, rel=0.01)
    assert clock.now <= 485.0
    order = [row.get("rung") for row in rows if row["kind"] == "measurement" and row["section"] == "ladder"]
    assert order.index(6) < order.index(5) < order.index(7) < order.index(1)
    text = bench.summarize(rows)
    assert "**Targets**, on NVIDIA H200 (replayed) (host:" in text and "rung 7 (compiled) against rung 1" in text


def test_with_less_time_the_compiled_rungs_still_come_first(tmp_path, monkeypatch):
    run, clock, rows = _replay(tmp_path, monkeypatch, left_s=220.0)
    ladder = {row["rung"] for row in rows if row["kind"] == "measurement" and row["section"] == "ladder"}
    assert {5, 6} <= ladder and clock.now <= 220.0


def test_a_deadline_too_short_for_the_compile_skips_it_and_the_ladder_goes_on_eager(tmp_path, monkeypatch):
    run, clock, rows = _replay(tmp_path, monkeypatch, left_s=100.0)
    skipped = {row["item"]: row["reason"] for row in rows if row["kind"] == "skipped"}
    assert "compiling the UNet first" in skipped["5. + torch.compile"]
    rung6 = next(row for row in rows if row.get("rung") == 6)
    assert rung6["unet"] == "eager"
    text = bench.summarize(rows)
    assert "**Targets**: not judged" in text  # an eager last rung is never judged against the compiled targets


def test_the_deadline_keeps_a_margin_and_repeats_shrink_to_fit():
    clock = FakeClock()
    deadline = bench.Deadline(100.0, clock=clock)
    assert deadline.fits(70) and not deadline.fits(80)  # 1.25 x 80 + 3 > 100
    assert bench.repeats_that_fit(deadline, 20.0, repeats=3) == 3  # 60 s: fits
    assert bench.repeats_that_fit(deadline, 30.0, repeats=3) == 2  # 90 s does not, 60 s does
    clock.now = 90.0
    assert bench.repeats_that_fit(deadline, 30.0, repeats=2) == 0


def test_the_cost_model_learns_each_kind_apart_and_a_line_from_two_counts():
    model = bench.CostModel()
    assert model.clip_s(20, "eager float16") is None  # nothing measured: no guess
    model.learn("eager float16", 20, 2.0)
    assert model.clip_s(20, "eager float16") == pytest.approx(2.0)
    assert model.clip_s(20, "compiled float16") == pytest.approx(2.0)  # a guess from the eager kind, erring long
    assert model.clip_s(20, "eager float32") == pytest.approx(4.0)  # float32 guessed twice as slow
    model.learn_line("compiled float16", bench.fit_step_costs(10, 0.4, 20, 0.5))
    assert model.clip_s(200, "compiled float16") == pytest.approx(2.3)
    model.learn("compiled float16", 20, 1.0)  # twice as slow as the line said: the line's shape kept
    assert model.clip_s(20, "compiled float16") == pytest.approx(1.0)
    assert model.clip_s(20, "eager float16", batch=4) == pytest.approx(8.0)
    assert bench.CostModel(lines={"compiled float16": bench.StepCosts(0.3, 0.01)}).clip_s(20, "eager float16") == \
        pytest.approx(5.0)  # an eager UNet guessed ten times slower than CUDA graphs


def test_the_compile_prior_scales_with_the_host_yardstick():
    assert bench.compile_prior_s(REFERENCE_YARDSTICK_S) == pytest.approx(138.0)
    assert bench.compile_prior_s(REFERENCE_YARDSTICK_S * 1.7) == pytest.approx(138.0 * 1.7)
    assert bench.compile_prior_s(REFERENCE_YARDSTICK_S * 100) == pytest.approx(138.0 * 3)  # capped: a rough guide
    assert bench.host_yardstick_s(trials=1) > 0


def test_a_compile_that_fails_at_its_first_call_goes_on_eager_with_one_line(tmp_path, monkeypatch, capsys):
    from torch._dynamo.exc import BackendCompilerFailed

    def inductor():
        pass

    clock = FakeClock()
    engine = ReplayEngine(clock)

    def fails(pipe, clip):
        raise BackendCompilerFailed(inductor, RuntimeError("triton says no"), None)
    engine.first_call_s = fails
    run = bench.Bench(out=tmp_path, deadline=bench.Deadline(1000.0, clock=clock), engine=engine, command="x",
                      model="full-size", device=torch.device("cuda"), seconds=10.24, ddim_steps=200, dpm_steps=20,
                      clock=clock, host_yardstick=lambda: REFERENCE_YARDSTICK_S)
    run.half = engine.load(torch.float16)
    run.compile()
    assert not run.half.compiled and not run.compiled
    row = _rows(tmp_path)[-1]
    assert row["kind"] == "skipped" and "goes on eager" in row["reason"] and "BackendCompilerFailed" in row["reason"]
    assert capsys.readouterr().out.splitlines()[-1].startswith("skipped: 5. + torch.compile: compiling failed")


def test_the_alarm_stops_an_item_that_runs_over():
    deadline = bench.Deadline(time.monotonic() + 0.2)
    with pytest.raises(bench.DeadlineReached):
        with bench.alarm_at(deadline):
            give_up = time.monotonic() + 30
            while time.monotonic() < give_up:  # an item far over its estimate: the alarm interrupts it
                pass
    assert time.monotonic() < give_up


def _measurement(label, section, median, runs=None, **fields):
    runs = runs or [median]
    return {"kind": "measurement", "configuration": label, "section": section, "dtype": "float16",
            "steps": fields.pop("steps", 20), "audio_seconds": 10.24, "median_s": median,
            "spread_s": max(runs) - min(runs), "runs_s": runs, "first_call_s": None, "peak_memory_gib": 2.0,
            "batch": 1, "unet": fields.pop("unet", "compiled"), "method": "measured", "at": "2026-12-04T17:40:00+00:00",
            **fields}


def test_the_summary_judges_a_compiled_last_rung_skips_a_missing_rung_and_says_within_noise():
    rows = [
        {"kind": "machine", "device_name": "NVIDIA H200", "cuda_capability": "9.0", "gpu_memory_gib": 140.0,
         "host_cpu": "Intel Xeon Platinum 8480+", "host_yardstick_s": 0.2, "python": "3.12.3", "cpu_count": 16,
         "versions": {"torch": "2.11.0"}, "command": "python -m helpers.bench", "deadline_s": 480, "model": "full-size",
         "smoke": False, "cpu_profile": False, "audio_seconds": 10.24, "ddim_steps": 200, "dpm_steps": 20,
         "started_at": "today"},
        {"kind": "peak", "dtype": "float16", "tflops": 800.0},
        {"kind": "load", "checkpoint_kind": "full-size"},
        _measurement("1. float32, DDIM 200, classic attention", "ladder", 12.0, runs=[11.0, 13.0], rung=1, steps=200,
                     unet="eager"),
        _measurement("2. + negative prompt", "ladder", 12.5, runs=[12.0, 13.0], rung=2, steps=200, unet="eager"),
        _measurement("4. float16", "ladder", 9.0, runs=[8.9, 9.1], rung=4, steps=200, unet="eager"),
        _measurement("6. + DPM-Solver++ 20 steps", "ladder", 0.3, runs=[0.29, 0.31], rung=6),
        _measurement("7. beyond the blog", "ladder", 0.1, rung=7),
        _measurement("8. approximations: DPM-Solver++ 10 steps, deep features reused", "ladder", 0.025, rung=8, steps=10),
        {"kind": "stages", "label": "7", "unet": "compiled", "method": "CUDA events", "dtype": "float16", "steps": 20,
         "seconds": {"UNet": 0.04, "vocoder": 0.01}, "calls": {"UNet": 20, "vocoder": 1}, "total_s": 0.1,
         "other_s": 0.05, "once_per_clip_s": 0.01, "per_step_s": 0.002, "at": "2026-12-04T17:41:00+00:00"},
        {"kind": "flops", "label": "7", "steps": 2, "flops": {"UNet": 2 * 341.5e9, "vocoder": 1027e9}},
        {"kind": "profile", "label": "7", "unet": "compiled", "dtype": "float16", "work": "GPU kernels and copies",
         "steps": 20, "launches_per_step": 850.0, "busy_per_step_s": 0.0015, "span_per_step_s": 0.002,
         "clip_launches": 21000, "clip_busy_s": 0.04, "clip_span_s": 0.1, "unplaced": 0, "verdict": "(written)",
         "at": "2026-12-04T17:42:00+00:00"},
        _measurement("eager + faster", "techniques", 0.65, runs=[0.64, 0.66], group="eager",
                     baseline_runs_s=[1.3, 1.31], baseline_median_s=1.305),
        _measurement("eager + barely", "techniques", 1.28, runs=[1.27, 1.29], group="eager",
                     baseline_runs_s=[1.25, 1.32], baseline_median_s=1.285),
        {"kind": "skipped", "item": "TF32", "reason": "would take about 90 s and 20 s are left"},
        {"kind": "end", "status": "completed", "t_s": 470.0},
    ]
    text = bench.summarize(rows)
    assert "NVIDIA H200" in text and "Intel Xeon Platinum 8480+" in text and "full-size random weights" in text
    assert "**Targets**, on NVIDIA H200 (host: Intel Xeon Platinum 8480+)" in text and "120.0x (target 100x: met)" in text
    assert "100 ms (target 60 ms for a 10.24 s clip on an H100/H200: not met)" in text  # rung 7, not rung 8
    assert "Rung 8 (approximations, its audio differs): 25 ms, 480.0x rung 1 (target 30 ms: met)" in text
    assert "| 2. + negative prompt | eager |" in text and "within noise |" in text  # 12 -> 12.5, spreads of 1 s
    assert "(vs rung 2)" in text and "(vs rung 4)" in text  # rungs 3 and 5 missing: compared with the one before
    assert "| UNet | 20 | 0.04 | 40.0% | 6830 | 171 | 21.3% |" in text
    assert ("## One profiled clip of rung 7 (compiled UNet, float16, at 17:42:00 UTC)\n\ndenoising loop, per step (over "
            "20 UNet calls): 850 GPU kernels and copies; busy 1.50 ms of each 2.00 ms step (75%)\n") in text
    assert "host-bound: the GPU waits 25% of each step" in text
    assert ("a step's FLOP floor: 341.5 GFLOP at 800.00 TFLOP/s = 0.43 ms; the step is busy 3.5x that and takes 4.7x "
            "that") in text
    assert "| eager | eager + faster | 1.3 | 0.65 | 0.02 | 2.01x |" in text
    assert "| eager | eager + barely | 1.28 | 1.28 | 0.07 | within noise |" in text
    assert "17:40:00" in text and "- TF32: would take about 90 s" in text and "completed after 470 s" in text


@pytest.mark.slow(reason="the real command with a 60 s deadline")
def test_a_dry_run_on_the_tiny_checkpoint_ends_by_itself_with_a_valid_results_file(tiny_checkpoint, tmp_path):
    """The real command, one process, on a busy 2-core machine: the deadline is 60 s, the test allows 75."""
    out = tmp_path / "bench"
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "--model", str(tiny_checkpoint), "--deadline", "60",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=150,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall_s = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-2000:]
    assert wall_s < 75, f"took {wall_s:.0f} s"
    rows = _rows(out)  # every line parses
    kinds = [row["kind"] for row in rows]
    assert kinds[0] == "machine" and kinds[-1] == "end" and "measurement" in kinds and "load" in kinds
    assert all("at" in row for row in rows) and rows[0]["host_cpu"] and rows[0]["host_yardstick_s"] > 0
    summary = (out / bench.SUMMARY_FILE).read_text()
    assert "## Skipped" in summary and "5. + torch.compile" in summary and "tiny random weights" in summary
    assert str(tiny_checkpoint) in summary and "--deadline 60" in summary


def test_a_bad_deadline_is_one_line():
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "--deadline", "-5", "--out", "/tmp/x"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "--deadline must be a positive number" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow(reason="rungs 5-7 of the tiny checkpoint on a CPU, its UNet compiled by Dynamo: about a minute")
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")  # diffusers' upsampling
def test_the_compiled_path_runs_on_a_cpu_with_dynamo_alone(tiny_checkpoint, tmp_path, monkeypatch):
    """The real engine on the tiny checkpoint, its UNet compiled by Dynamo alone (the GPU's Inductor with CUDA graphs
    stands in): rungs 6, 5, 7 and 8 measured on the compiled UNet, 6's and 7's splits, and DDIM reusing the graphs
    compiled at DPM-Solver++ (no recompile)."""
    from helpers.bench.engine import Engine

    engine = Engine(str(tiny_checkpoint), torch.device("cpu"), 2.56)
    engine.can_compile = lambda: (True, "")
    engine.compile_unet = lambda pipe: setattr(pipe, "unet", torch.compile(pipe.unet, backend="eager",
                                                                           fullgraph=True))
    monkeypatch.setenv("AUDIOLDM2_COMPILE_CACHE", str(tmp_path / "compile-cache"))
    monkeypatch.setattr(bench.items, "RUNG6_REPEATS", 2)  # what is checked here is the path, not a figure
    monkeypatch.setattr(bench.Bench, "flops", lambda self: None)
    torch._dynamo.reset()
    run = bench.Bench(out=tmp_path, deadline=bench.Deadline(time.monotonic() + 600), engine=engine, command="test",
                      model=str(tiny_checkpoint), device=torch.device("cpu"), seconds=2.56, ddim_steps=4, dpm_steps=2)
    try:
        run.recipe_rungs()
    finally:
        torch._dynamo.reset()
    rows = _rows(tmp_path)
    assert not [row for row in rows if row["kind"] == "error"], rows
    ladder = {row["rung"]: row for row in rows if row["kind"] == "measurement"}
    assert {5, 6, 7, 8} <= set(ladder) and ladder[5]["unet"] == ladder[6]["unet"] == ladder[8]["unet"] == "compiled"
    assert ladder[8]["steps"] == 1 and "deep features reused every 2nd step" in ladder[8]["changes"]  # 10 of 20
    assert next(row for row in rows if row["kind"] == "recompiles")["new_graphs"] == 0
    assert {row["label"] for row in rows if row["kind"] == "stages"} == {"6", "7"}
    assert run.engine.scheduler_name(run.half) == "DPMSolverMultistepScheduler"  # rung 5's DDIM undone


def test_the_ladders_noise_floor_is_rung_6_measured_twice():
    """Rung 6 again after rung 7 gives the floor, as a share of a median: 7 within it reads "within noise"."""
    def row(rung, median, spread, section="ladder", label=None):
        return {"kind": "measurement", "section": section, "rung": rung, "configuration": label or f"{rung}. r",
                "median_s": median, "spread_s": spread, "runs_s": [median], "dtype": "float16", "steps": 20,
                "peak_memory_gib": 1.0}
    ladder = [row(1, 12.0, 0.5), row(6, 0.300, 0.002), row(7, 0.290, 0.002)]
    repeat = row(6, 0.320, 0.003, section="ladder repeat", label="6. r, again")
    assert bench.summary.relative_noise(ladder, ladder + [repeat]) == pytest.approx(0.02 / 0.300)
    assert bench.summary.relative_noise(ladder, ladder) == 0.0  # no repeat: the spreads alone
    with_repeat = "\n".join(bench.summary._ladder(ladder + [repeat], {"device_name": "cpu"}))
    without = "\n".join(bench.summary._ladder(ladder, {"device_name": "cpu"}))
    assert "| 7. r |" in with_repeat and "within noise" in with_repeat.split("| 7. r |")[1].splitlines()[0]
    assert "1.03x" in without.split("| 7. r |")[1].splitlines()[0]  # 0.300 / 0.290, outside the spreads alone
    assert "rung 6 measured again after rung 7 (0.32 s against 0.3 s): a noise floor of 6.7% of a median" in with_repeat
