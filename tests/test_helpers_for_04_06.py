"""The decisions notebooks 04 and 06 follow instead of branching on the device or the profile, with the device's
capabilities injected: a T4 (CUDA 7.5), an A100 (8.0), an H100 (9.0), an Apple GPU, a CPU with and without bfloat16.
"""

import pytest
import torch

from helpers import precision, settings
from helpers.precision import CpuFeatures

T4, A100, H100 = (7, 5), (8, 0), (9, 0)
NO_BF16 = CpuFeatures(avx512_bf16=False, amx=False)  # Skylake to Ice Lake servers, most laptops
ZEN4 = CpuFeatures(avx512_bf16=True, amx=False)
SAPPHIRE_RAPIDS = CpuFeatures(avx512_bf16=True, amx=True)


@pytest.fixture(autouse=True)
def a_readers_machine(monkeypatch):
    monkeypatch.delenv(settings.TESTS_HALF_ON_CPU_ENV, raising=False)


def measured(device, **capabilities) -> list[str]:
    return [run.name for run in precision.precisions_to_measure(device, **capabilities).values() if run.measured]


def test_04_times_float16_on_a_t4_and_says_why_not_bfloat16():
    runs = precision.precisions_to_measure("cuda", capability=T4)
    assert measured("cuda", capability=T4) == ["float16"]
    assert runs["float16"].torch_dtype == torch.float16 and runs["float16"].autocast is None
    assert "capability 7.5" in runs["bfloat16 weights"].reason and "8.0" in runs["bfloat16 weights"].reason
    assert "half-precision weights" in runs["bfloat16 autocast"].reason
    assert str(runs["bfloat16 weights"]).startswith("bfloat16 weights: not measured here: ")


@pytest.mark.parametrize("capability", [A100, H100])
def test_04_times_both_half_weights_from_ampere_on(capability):
    assert measured("cuda", capability=capability) == ["float16", "bfloat16 weights"]


def test_04_times_float16_on_an_apple_gpu():
    runs = precision.precisions_to_measure("mps")
    assert measured("mps") == ["float16"]
    assert "float16" in runs["bfloat16 weights"].reason


@pytest.mark.parametrize("cpu", [ZEN4, SAPPHIRE_RAPIDS])
def test_04_times_bfloat16_weights_and_autocast_on_a_cpu_that_computes_it(cpu):
    runs = precision.precisions_to_measure("cpu", cpu=cpu)
    assert measured("cpu", cpu=cpu) == ["bfloat16 weights", "bfloat16 autocast"]
    autocast = runs["bfloat16 autocast"]
    assert (autocast.torch_dtype, autocast.autocast) == (torch.float32, torch.bfloat16)  # float32 weights under it
    assert "float16" in runs["float16"].reason and "slower than float32" in runs["float16"].reason


def test_04_times_no_half_precision_on_a_cpu_without_bfloat16_and_says_why():
    runs = precision.precisions_to_measure("cpu", cpu=NO_BF16)
    assert list(runs) == ["float16", "bfloat16 weights", "bfloat16 autocast"]
    assert not any(run.measured for run in runs.values())
    assert all("slower than float32" in run.reason for run in runs.values())
    assert "AVX512-BF16" in runs["bfloat16 weights"].reason


def test_the_tests_switch_times_both_half_weights_on_any_cpu_and_says_so(monkeypatch):
    monkeypatch.setenv(settings.TESTS_HALF_ON_CPU_ENV, "1")
    runs = precision.precisions_to_measure("cpu", cpu=NO_BF16)
    assert measured("cpu", cpu=NO_BF16) == ["float16", "bfloat16 weights"]  # autocast: only where it pays
    assert settings.TESTS_HALF_ON_CPU_ENV in runs["float16"].reason
    assert measured("cpu", cpu=ZEN4) == ["float16", "bfloat16 weights", "bfloat16 autocast"]
    assert settings.TESTS_HALF_ON_CPU_ENV not in runs["bfloat16 autocast"].reason
    assert measured("cuda", capability=T4) == ["float16"]  # the switch is for CPUs only


@pytest.mark.parametrize("device, capabilities, dtype, words", [
    ("cuda", {"capability": T4}, torch.float16, "computes float16 natively"),
    ("cuda", {"capability": A100}, torch.float16, "computes float16 natively"),
    ("cuda", {"capability": H100}, torch.float16, "CUDA GPU"),
    ("mps", {}, torch.float16, "Apple GPU"),
    ("cpu", {"cpu": ZEN4}, torch.bfloat16, "emulated"),
    ("cpu", {"cpu": ZEN4}, torch.bfloat16, "AVX512-BF16"),
    ("cpu", {"cpu": CpuFeatures(avx512_bf16=False, amx=True)}, torch.bfloat16, "AMX"),
    ("cpu", {"cpu": NO_BF16}, torch.float32, "neither AVX512-BF16 nor AMX"),
])
def test_the_ladder_dtype_is_said_in_one_line_with_its_reason(device, capabilities, dtype, words):
    line = precision.ladder_dtype_reason(device, **capabilities)
    assert precision.ladder_dtype(device, **capabilities) == dtype
    assert line.startswith(str(dtype).removeprefix("torch.") + ": ") and words in line and "\n" not in line


@pytest.fixture
def cpu_profile(monkeypatch):
    monkeypatch.delenv(settings.SMOKE_ENV, raising=False)
    monkeypatch.delenv(settings.FULL_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def a_cuda_gpu(monkeypatch):
    monkeypatch.delenv(settings.SMOKE_ENV, raising=False)
    monkeypatch.delenv(settings.FULL_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_06s_sweep_in_the_cpu_profile_keeps_the_blogs_counts_timed_once(cpu_profile):
    sweep = settings.step_sweep([10, 15, 20, 25, 50])
    assert sweep.counts == {10: 10, 15: 15, 20: 20, 25: 25, 50: 50}  # what is heard keeps its count
    assert (sweep.warmup, sweep.repeats) == (0, 1)
    assert "CPU profile" in sweep.reason and sweep.label(20) == "20 steps"


def test_06s_sweep_on_a_gpu_warms_up_and_repeats(a_cuda_gpu):
    sweep = settings.step_sweep([10, 20])
    assert sweep.counts == {10: 10, 20: 20} and (sweep.warmup, sweep.repeats) == (1, 3)


def test_06s_sweep_in_smoke_mode_collapses_to_one_count_labelled_as_the_blogs(monkeypatch):
    monkeypatch.setenv(settings.SMOKE_ENV, "1")
    sweep = settings.step_sweep([10, 15, 20, 25, 50])
    assert sweep.counts == {settings.SMOKE_MAX_STEPS: 20}
    assert sweep.label(settings.SMOKE_MAX_STEPS) == "2 steps (the blog: 20)"
    assert settings.step_sweep([10, 15]).counts == {settings.SMOKE_MAX_STEPS: 10}  # no 20: the smallest's label
