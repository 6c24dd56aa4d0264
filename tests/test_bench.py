"""python -m helpers.bench: the deadline on a fake clock, the compile it must not start, the summary it writes,
and one real run on the tiny checkpoint that ends by itself with a valid results file."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import helpers as h
from helpers import bench
from helpers.timing import StepCosts

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


def _bench(tmp_path, left_s, device="cpu", clip_s=1.0):
    clock = FakeClock()
    run = bench.Bench(out=tmp_path, deadline=bench.Deadline(left_s, clock=clock), model="tiny",
                      device=torch.device(device), command="python -m helpers.bench --deadline 1 --out x")
    run.cost = bench.CostModel(StepCosts(fixed_s=clip_s, per_step_s=0.0))
    run.steps = 20
    run.pipe = SimpleNamespace(unet=torch.nn.Linear(1, 1))  # an eager UNet, never called by these tests
    return run, clock


def _rows(path):
    return [json.loads(line) for line in (path / bench.RESULTS_FILE).read_text().splitlines()]


def test_the_deadline_keeps_a_margin_and_repeats_shrink_to_fit():
    clock = FakeClock()
    deadline = bench.Deadline(100.0, clock=clock)
    assert deadline.fits(70) and not deadline.fits(80)  # 1.25 x 80 + 3 > 100
    assert bench.repeats_that_fit(deadline, 20.0, warmup=1, repeats=2) == 2  # 60 s: fits
    assert bench.repeats_that_fit(deadline, 30.0, warmup=1, repeats=2) == 1  # 90 s does not, 60 s does
    clock.now = 90.0
    assert bench.repeats_that_fit(deadline, 30.0, warmup=1, repeats=2) == 0


def test_the_cost_model_learns_each_kind_of_unet_apart():
    model = bench.CostModel(StepCosts(fixed_s=1.0, per_step_s=0.1))
    assert model.clip_s(20) == pytest.approx(3.0)
    model.learn(20, 6.0)  # twice as slow as the first short runs said
    assert model.clip_s(200) == pytest.approx(2 * 21.0) and model.clip_s(20, batch=4) == pytest.approx(24.0)
    assert model.clip_s(20, kind="compiled") == pytest.approx(6.0)  # nothing compiled measured yet: the eager scale
    model.learn(20, 0.3, kind="compiled")
    assert model.clip_s(20, kind="compiled") == pytest.approx(0.3) and model.clip_s(20) == pytest.approx(6.0)


def test_an_item_that_would_not_fit_is_skipped_and_written_down(tmp_path):
    run, clock = _bench(tmp_path, left_s=10.0, clip_s=5.0)
    assert run.measure("a long item", "ladder") is None
    row = _rows(tmp_path)[-1]
    assert row["kind"] == "skipped" and row["item"] == "a long item" and "about" in row["reason"]


def _cuda_that_compiles(monkeypatch, ok=True):
    monkeypatch.setattr(h.compiling, "compile_support", lambda device: (ok, "test GPU" if ok else "no Triton here"))


def test_rung_5_never_starts_a_compile_that_cannot_end_before_the_deadline(tmp_path, monkeypatch):
    _cuda_that_compiles(monkeypatch)
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("started a compile with no time for it"))
    run, clock = _bench(tmp_path, left_s=bench.UNET_COMPILE_S, device="cuda", clip_s=0.5)
    run.rung5()
    row = _rows(tmp_path)[-1]
    assert row["kind"] == "skipped" and row["item"] == "5. + torch.compile" and "compiling the UNet" in row["reason"]


def test_rung_5_says_why_it_cannot_compile_and_off_cuda_it_is_a_gpu_lesson(tmp_path, monkeypatch):
    _cuda_that_compiles(monkeypatch, ok=False)
    run, clock = _bench(tmp_path, left_s=1000.0, device="cuda")
    run.rung5()
    assert "no Triton here" in _rows(tmp_path)[-1]["reason"]
    run, clock = _bench(tmp_path / "cpu", left_s=1000.0, device="cpu")
    run.rung5()
    assert "CUDA graphs" in _rows(tmp_path / "cpu")[-1]["reason"]


def test_a_compile_that_fails_at_its_first_call_goes_on_eager_with_one_line(tmp_path, monkeypatch, capsys):
    from torch._dynamo.exc import BackendCompilerFailed

    _cuda_that_compiles(monkeypatch)

    def inductor():
        pass

    class Unet(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise BackendCompilerFailed(inductor, RuntimeError("triton says no"), None)

    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: Unet())
    monkeypatch.setattr(bench, "time_once", lambda fn, device: fn())
    run, clock = _bench(tmp_path, left_s=1000.0, device="cuda")
    eager = run.pipe.unet
    run.generate = lambda steps, batch=1, pipe=None: run.pipe.unet()
    run.rung5()
    assert run.pipe.unet is eager and run.compiled_unet is None
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
    return {"kind": "measurement", "notebook": "bench", "configuration": label, "section": section, "dtype": "float16",
            "steps": fields.pop("steps", 20), "audio_seconds": 10.24, "median_s": median,
            "spread_s": max(runs) - min(runs), "runs_s": runs, "first_call_s": None, "peak_memory_gib": 2.0,
            "batch": 1, **fields}


def test_the_summary_reports_the_targets_each_stage_against_the_peak_and_what_is_within_noise():
    rows = [
        {"kind": "machine", "device_name": "NVIDIA H200", "cuda_capability": "9.0", "gpu_memory_gib": 140.0,
         "python": "3.12.3", "cpu_count": 16, "versions": {"torch": "2.11.0"}, "command": "python -m helpers.bench",
         "deadline_s": 480, "model": "full-size", "smoke": False, "cpu_profile": False, "audio_seconds": 10.24,
         "ddim_steps": 200, "dpm_steps": 20, "started_at": "today"},
        {"kind": "peak", "dtype": "float16", "tflops": 800.0},
        {"kind": "load", "checkpoint_kind": "full-size"},
        _measurement("1. float32, DDIM 200, classic attention", "ladder", 12.0, rung=1, steps=200),
        _measurement("7. beyond the blog", "ladder", 0.1, rung=7),
        {"kind": "stages", "label": "7", "method": "CUDA events", "dtype": "float16", "steps": 20,
         "seconds": {"UNet": 0.04, "vocoder": 0.01}, "calls": {"UNet": 20, "vocoder": 1}, "total_s": 0.1,
         "other_s": 0.05, "fixed_s": 0.06, "per_step_s": 0.002},
        {"kind": "flops", "label": "7", "steps": 2, "flops": {"UNet": 2 * 341.5e9, "vocoder": 1027e9}},
        _measurement("eager: rung 6", "techniques", 1.30, runs=[1.25, 1.30], group="eager", baseline=True),
        _measurement("eager + faster", "techniques", 0.65, group="eager"),
        _measurement("eager + barely", "techniques", 1.28, group="eager"),
        _measurement("eager: rung 6 again", "techniques", 1.32, runs=[1.31, 1.32], group="eager", baseline=True),
        {"kind": "skipped", "item": "TF32", "reason": "would take about 90 s and 20 s are left"},
        {"kind": "end", "status": "completed", "t_s": 470.0},
    ]
    text = bench.summarize(rows)
    assert "NVIDIA H200" in text and "full-size random weights" in text and "`python -m helpers.bench`" in text
    assert "120.0x (target 100x: met)" in text and "100 ms (target 60 ms for 10.24 s on an H100/H200: not met)" in text
    # the UNet: 20 steps x 341.5 GFLOP in 0.04 s = 170.75 TFLOP/s, 21.3 % of the 800 TFLOP/s peak
    assert "| UNet | 20 | 0.04 | 40.0% | 6830 | 171 | 21.3% |" in text
    assert "| eager | eager + faster | 0.65 | 0 | 2.00x | 2 |" in text
    assert "| eager | eager + barely | 1.28 | 0 | within noise | 2 |" in text  # the floor is 0.05 s
    assert "- TF32: would take about 90 s" in text and "completed after 470 s" in text


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
    summary = (out / bench.SUMMARY_FILE).read_text()
    assert "## Skipped" in summary and "5. + torch.compile" in summary and "tiny random weights" in summary
    assert str(tiny_checkpoint) in summary and "--deadline 60" in summary
