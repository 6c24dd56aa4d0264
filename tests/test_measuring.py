"""Timing, peak memory and the results log."""

import json
import time
import warnings

import numpy as np
import pytest

from helpers import results
from helpers.memory import peak_memory
from helpers.timing import Timing, time_runs


def test_warmup_is_timed_apart_from_the_median():
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.25 if len(calls) == 1 else 0.02)  # a slow first call, as a compile or CUDA start-up

    timing = time_runs(work, device="cpu", warmup=1, repeats=3, audio_seconds=10.24, label="sleep")
    assert len(calls) == 4 and len(timing.runs_s) == 3
    assert timing.warmup_s[0] >= 0.25
    assert 0.02 <= timing.median_s < 0.2
    assert timing.realtime_factor == pytest.approx(10.24 / timing.median_s)
    assert "first call" in str(timing) and "[cpu]" in str(timing)


def test_median_and_spread():
    timing = Timing("t", "cpu", runs_s=[1.0, 3.0, 2.0])
    assert timing.median_s == 2.0 and timing.spread_s == 2.0 and timing.realtime_factor is None


def test_no_repeats_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        time_runs(lambda: None, device="cpu", repeats=0)


def test_peak_host_memory_sees_a_short_lived_allocation():
    with peak_memory("cpu") as baseline:
        time.sleep(0.05)
    with peak_memory("cpu") as memory:
        block = np.ones(300 * 1024**2 // 8)  # 300 MiB, touched
        time.sleep(0.05)
        del block
    assert memory.host_rss - baseline.host_rss > 200 * 1024**2
    assert memory.gpu_reserved is None and "host memory" in str(memory)


def _row(**overrides):
    row = {"notebook": "01_baseline", "configuration": "fp32", "median_s": 2.0}
    row.update(overrides)
    return row


def test_results_log_round_trip(tmp_path, tiny_pipe):
    path = tmp_path / "log.jsonl"
    timing = Timing("baseline", "cpu", runs_s=[1.0, 1.2, 1.1], warmup_s=[3.0], audio_seconds=10.24)
    with peak_memory("cpu") as memory:
        pass
    row = results.record("01_baseline", "fp32 DDIM 200", timing, memory, pipe=tiny_pipe, steps=200, path=path)
    assert row["checkpoint_kind"] == "tiny" and row["dtype"] == "float32" and row["first_call_s"] == 3.0
    table = results.read_table(path)
    assert list(table["configuration"]) == ["fp32 DDIM 200"]
    assert table["median_s"][0] == pytest.approx(1.1)
    assert "diffusers 0.42.1" in table["versions"][0]


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


def test_markdown_table(tmp_path):
    path = tmp_path / "log.jsonl"
    results.append_row(_row(median_s=1.23456, spread_s=None), path)
    text = results.markdown_table(results.read_table(path), ["configuration", "median_s", "spread_s"])
    assert text.splitlines()[2] == "| fp32 | 1.23 |  |"


def test_step_costs_are_split_from_two_short_runs():
    from helpers.timing import estimate_step_costs

    calls = []

    def fake_generate(steps):  # 0.05 s fixed + 0.02 s per step, on the CPU clock
        calls.append(steps)
        time.sleep(0.05 + 0.02 * steps)

    costs = estimate_step_costs(fake_generate, "cpu", few=1, more=6)
    assert calls == [1, 1, 6]  # an untimed first call, then the two timed ones
    assert costs.per_step_s == pytest.approx(0.02, abs=0.01)
    assert costs.fixed_s == pytest.approx(0.05, abs=0.02)
    assert costs.clip_s(100) == pytest.approx(costs.fixed_s + 100 * costs.per_step_s)
