"""Timing, peak memory and the results log.

No test here depends on how fast or how busy the machine is: timings run on a fake clock that the timed work
advances itself, and the memory sampler is waited for until it has seen what it must see.
"""

import mmap
import threading
import time

import numpy as np
import pytest

from helpers import results
from helpers.memory import HostMemorySampler, current_rss, peak_memory
from helpers.timing import Timing, estimate_step_costs, time_runs

MiB = 1024**2


class FreshMemory:
    """``size`` bytes of new, touched pages straight from the kernel (anonymous mmap): they always add to RSS,
    whatever the process's allocator kept from earlier tests. ``close()`` gives them back."""

    def __init__(self, size: int):
        self.map = mmap.mmap(-1, size)
        np.frombuffer(self.map, dtype=np.uint8)[:] = 1  # touch every page

    def close(self) -> None:
        self.map.close()


class FakeClock:
    """A clock that stands still until the work being timed moves it on."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_time_runs_keeps_the_slow_first_call_out_of_the_median():
    clock, calls = FakeClock(), []

    def work():
        calls.append(1)
        clock.advance(0.25 if len(calls) == 1 else [0.02, 0.05, 0.03][len(calls) - 2])

    timing = time_runs(work, device="cpu", warmup=1, repeats=3, audio_seconds=10.24, label="work", clock=clock)
    assert len(calls) == 4
    assert timing.warmup_s == pytest.approx([0.25])
    assert timing.runs_s == pytest.approx([0.02, 0.05, 0.03])
    assert timing.median_s == pytest.approx(0.03) and timing.spread_s == pytest.approx(0.03)
    assert timing.realtime_factor == pytest.approx(10.24 / 0.03)
    assert "first call 0.250 s" in str(timing) and "[cpu]" in str(timing)


def test_timing_without_audio_has_no_realtime_factor():
    timing = Timing("t", "cpu", runs_s=[1.0, 3.0, 2.0])
    assert timing.median_s == 2.0 and timing.spread_s == 2.0 and timing.realtime_factor is None
    assert "audio per second" not in str(timing)


def test_no_repeats_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        time_runs(lambda: None, device="cpu", repeats=0)


def test_step_costs_are_split_from_two_short_runs():
    clock, calls = FakeClock(), []

    def fake_generate(steps):  # 0.5 s fixed + 0.2 s per step; the untimed first call is slower
        calls.append(steps)
        clock.advance((3.0 if len(calls) == 1 else 0.5) + 0.2 * steps)

    costs = estimate_step_costs(fake_generate, "cpu", few=1, more=6, clock=clock)
    assert calls == [1, 1, 6]  # an untimed first call, then the two timed ones
    assert costs.per_step_s == pytest.approx(0.2)
    assert costs.fixed_s == pytest.approx(0.5)
    assert costs.clip_s(100) == pytest.approx(20.5)


def test_the_host_memory_sampler_keeps_the_highest_reading():
    readings = iter([100, 700, 300, 200])
    sampler = HostMemorySampler(read_bytes=lambda: next(readings))  # 100 is read when it is made
    assert [sampler.sample() for _ in range(3)] == [700, 300, 200]
    assert sampler.peak == 700


def test_the_sampler_thread_catches_a_peak_that_is_gone_before_the_block_ends():
    """The peak exists only until the sampler has read it once; then it is gone, as a freed buffer is."""
    seen_peak = threading.Event()
    level = {"bytes": 100}

    def read_bytes():
        if level["bytes"] == 900:
            seen_peak.set()
        return level["bytes"]

    sampler = HostMemorySampler(read_bytes=read_bytes, interval_s=0.001)
    sampler.start()
    level["bytes"] = 900
    assert seen_peak.wait(timeout=60), "the sampler thread never took a reading"
    level["bytes"] = 100
    assert sampler.stop() == 900 and not sampler.is_alive()


def test_the_sampler_thread_reads_this_processs_resident_memory():
    baseline = current_rss()
    sampler = HostMemorySampler(interval_s=0.001)
    sampler.start()
    block = FreshMemory(300 * MiB)  # alive until the sampler has counted it
    deadline = time.monotonic() + 60
    while sampler.peak - baseline < 200 * MiB and time.monotonic() < deadline:
        time.sleep(0.01)
    block.close()
    assert sampler.stop() - baseline > 200 * MiB


def test_peak_memory_on_a_cpu_reports_host_memory_that_includes_the_block():
    with peak_memory("cpu") as before:
        pass
    with peak_memory("cpu") as memory:
        block = FreshMemory(300 * MiB)  # still alive when the block ends: the last reading sees it
    block.close()
    assert memory.host_rss - before.host_rss > 200 * MiB
    assert memory.gpu_reserved is None and "host memory" in str(memory)


def _row(**overrides):
    row = {"notebook": "01_baseline", "configuration": "fp32", "median_s": 2.0}
    row.update(overrides)
    return row


def test_a_recorded_measurement_reads_back_with_its_device_dtype_and_versions(tmp_path, tiny_pipe):
    import diffusers

    path = tmp_path / "log.jsonl"
    timing = Timing("baseline", "cpu", runs_s=[1.0, 1.2, 1.1], warmup_s=[3.0], audio_seconds=10.24)
    with peak_memory("cpu") as memory:
        pass
    row = results.record("01_baseline", "fp32 DDIM 200", timing, memory, pipe=tiny_pipe, steps=200, path=path)
    assert tuple(row) == results.COLUMNS  # the documented columns, in order
    assert row["checkpoint_kind"] == "tiny" and row["dtype"] == "float32" and row["first_call_s"] == 3.0
    table = results.read_table(path)
    assert list(table["configuration"]) == ["fp32 DDIM 200"]
    assert table["median_s"][0] == pytest.approx(1.1)
    assert f"diffusers {diffusers.__version__}" in table["versions"][0]


def test_damaged_lines_are_skipped_with_a_warning_and_no_row_is_lost(tmp_path):
    path = tmp_path / "log.jsonl"
    results.append_row(_row(configuration="a"), path)
    with open(path, "a") as log:
        log.write("not json at all\n")
    results.append_row(_row(configuration="b"), path)
    with open(path, "a") as log:
        log.write('{"notebook": "08_summ')  # a write cut short: no newline
    results.append_row(_row(configuration="c"), path)  # must not be glued to the damaged line
    with pytest.warns(results.ResultsLogWarning, match=r"skipped 2 damaged line\(s\) \(2, 4\)"):
        rows = results.read_rows(path)
    assert [r["configuration"] for r in rows] == ["a", "b", "c"]


def test_missing_log_reads_as_empty(tmp_path):
    assert results.read_rows(tmp_path / "none.jsonl") == []
    assert results.read_table(tmp_path / "none.jsonl").empty


def test_markdown_table_leaves_a_measurement_not_made_empty(tmp_path):
    path = tmp_path / "log.jsonl"
    results.append_row(_row(median_s=1.23456, spread_s=None), path)
    text = results.markdown_table(results.read_table(path), ["configuration", "median_s", "spread_s"])
    assert text.splitlines()[2] == "| fp32 | 1.23 |  |"




def test_peak_memory_on_cuda_empties_the_cache_before_resetting_the_counters(monkeypatch):
    """Else a smaller run measured after a bigger one would read the bigger one's cached memory as its own."""
    import torch

    calls = []
    for name in ("synchronize", "empty_cache", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda *args, name=name: calls.append(name))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 1024**3)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 4 * 1024**3)
    with peak_memory("cuda") as memory:
        calls.append("work")
    assert calls == ["synchronize", "empty_cache", "reset_peak_memory_stats", "work", "synchronize"]
    assert memory.peak_gib == 4.0 and "3.00 GiB allocated, 4.00 GiB reserved" in str(memory)


def test_a_difference_smaller_than_a_repeated_baselines_spread_is_within_noise():
    from helpers.timing import Timing, noise_floor_s, speedup_text

    baseline = Timing("rung 6", "cpu", runs_s=[7.8, 7.9, 8.0])
    again = Timing("rung 6 again", "cpu", runs_s=[8.4, 8.5, 8.5])
    floor = noise_floor_s(baseline, again)
    assert floor == pytest.approx(0.6)  # the gap between the medians, larger than either spread
    assert speedup_text(baseline.median_s, 8.0, floor) == "within noise"  # QKV fusion's 8.00 s against 7.9
    assert speedup_text(baseline.median_s, 4.61, floor) == "1.71x"
    with pytest.raises(ValueError, match="at least one"):
        noise_floor_s()


def test_smoke_runs_print_no_estimate_as_a_measurement(monkeypatch, capsys):
    from helpers import measuring, settings

    monkeypatch.setenv("AUDIOLDM2_SMOKE", "1")
    assert measuring.estimate(12.2) == "smoke run: not measured"
    measuring.say_how_long("one clip", 12.2)
    assert capsys.readouterr().out == "one clip: smoke run: not measured.\n"
    assert settings.steps_label(20) == "2 steps (the blog: 20)" and settings.seconds_label(10.24) == "2.56 s (the blog: 10.24 s)"
    monkeypatch.setenv("AUDIOLDM2_SMOKE", "0")
    monkeypatch.setenv("AUDIOLDM2_FULL", "1")
    assert measuring.estimate(12.25) == "about 12.2 s" or measuring.estimate(12.25) == "about 12.3 s"
    assert settings.steps_label(20) == "20 steps" and settings.seconds_label(10.24) == "10.24 s"
