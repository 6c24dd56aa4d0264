"""The decisions notebooks 07 and 09 leave to the helpers, on every device the course meets, injected.

Each notebook cell prints what the helper decided; these check the decision on a T4, an A100 or H100, an Apple GPU
and a CPU with and without bfloat16, whatever machine runs the tests.
"""

import matplotlib
import pytest
import torch

from helpers import flops, memory, plots, precision
from helpers.stages import STAGES, StageTimes, how_stages_are_timed, profiler_sort_key

matplotlib.use("Agg")

T4, A100, H100 = (7, 5), (8, 0), (9, 0)
WITH_BF16 = precision.CpuFeatures(avx512_bf16=True, amx=False)
WITHOUT_BF16 = precision.CpuFeatures(avx512_bf16=False, amx=False)


# -- notebook 07: what memory is measured, and whether offload applies ---------------------------------------------
@pytest.mark.parametrize("device, label, words", [
    ("cuda", "GPU memory reserved", "peak counters"),
    ("cuda:1", "GPU memory reserved", "peak counters"),
    ("mps", "Metal memory held by the driver", "keeps no peak"),
    ("cpu", "host memory (RSS)", "RSS"),
])
def test_each_device_says_which_memory_its_peak_is(device, label, words):
    reading = memory.what_peak_memory_reads(device)
    assert reading.label == label
    assert words in reading.how and "\n" not in reading.how


def test_the_reading_agrees_with_what_peak_memory_prints():
    """The label a chart gets names the same memory as PeakMemory's own line on that device."""
    gib = memory.GIB
    assert "reserved" in str(memory.PeakMemory("cuda", gpu_allocated=gib, gpu_reserved=2 * gib))
    assert "held by the Metal driver" in str(memory.PeakMemory("mps", gpu_allocated=gib, gpu_reserved=2 * gib))
    assert "(RSS)" in str(memory.PeakMemory("cpu", host_rss=gib))


@pytest.mark.parametrize("device, starts", [("cuda", "this GPU: 15.0 GiB"), ("mps", "this Mac"),
                                            ("cpu", "this machine's host memory: 15.0 GiB")])
def test_the_memory_here_is_one_line_with_the_room_a_peak_may_take(device, starts):
    line = memory.memory_here_text(device, total_gib=15.0, room_gib=12.345)
    assert line.startswith(starts) and "about 12.3 GiB" in line and "\n" not in line


def test_the_memory_here_reads_this_machine_when_nothing_is_handed_in():
    line = memory.memory_here_text("cpu")
    assert line.startswith("this machine's host memory: ") and "GiB" in line


@pytest.mark.parametrize("device, applies, words", [
    ("cuda", True, "host memory"),
    ("cuda:0", True, "host memory"),
    ("mps", False, "shares one memory"),
    ("cpu", False, "nothing to offload to"),
])
def test_offload_applies_only_where_a_gpu_has_memory_of_its_own(device, applies, words):
    plan = memory.offload_plan(device)
    assert plan.applies is applies
    assert words in plan.why and "\n" not in plan.why


# -- notebooks 07 and 09: the dtype, the same last rung as 08 and 10 -------------------------------------------------
@pytest.mark.parametrize("device, capability, cpu, dtype", [
    ("cuda", T4, None, torch.float16),
    ("cuda", A100, None, torch.float16),
    ("cuda", H100, None, torch.float16),
    ("mps", None, None, torch.float16),
    ("cpu", None, WITH_BF16, torch.bfloat16),
    ("cpu", None, precision.CpuFeatures(avx512_bf16=False, amx=True), torch.bfloat16),
    ("cpu", None, WITHOUT_BF16, torch.float32),
])
def test_the_dtype_of_07_and_of_09s_last_rung_is_the_ladders(device, capability, cpu, dtype):
    assert precision.ladder_dtype(device, capability=capability, cpu=cpu) == dtype


# -- notebook 09: the matrix for the peak, the compile, the profiler's column, how stages are timed ---------------
def test_a_smoke_run_multiplies_a_small_matrix_and_a_measurement_a_large_one(monkeypatch):
    assert flops.peak_matrix_size(smoke=False) == 4096
    assert flops.peak_matrix_size(smoke=True) == 256
    monkeypatch.setenv("AUDIOLDM2_SMOKE", "1")
    assert flops.peak_matrix_size() == 256
    monkeypatch.setenv("AUDIOLDM2_SMOKE", "0")
    assert flops.peak_matrix_size() == 4096


@pytest.mark.parametrize("device, key", [("cuda", "device_time_total"), ("cuda:0", "device_time_total"),
                                         ("mps", "cpu_time_total"), ("cpu", "cpu_time_total")])
def test_the_profile_is_sorted_by_the_time_this_device_keeps(device, key):
    assert profiler_sort_key(device) == key


@pytest.mark.parametrize("device, words, not_words", [
    ("cuda", "CUDA events", "synchronised"),
    ("mps", "synchronised", "CUDA events"),
    ("cpu", "synchronised", "CUDA events"),
])
def test_the_split_says_how_it_was_timed(device, words, not_words):
    text = how_stages_are_timed(device)
    assert words in text and not_words not in text


@pytest.mark.parametrize("device, words", [("cuda", "CUDA events"), ("cpu", "synchronised")])
def test_the_stages_chart_says_how_its_seconds_were_read(device, words):
    """Its axis said "each stage synchronised" on every device: untrue on CUDA, where the split reads events."""
    import matplotlib.pyplot as plt

    times = StageTimes({stage: 1.0 for stage in STAGES}, {stage: 1 for stage in STAGES}, total_s=8.0, device=device)
    ax = plots.plot_stages({"a rung": times}, smoke=False)
    assert words in ax.get_xlabel()
    plt.close(ax.figure)
