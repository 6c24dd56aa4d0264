"""The decisions notebooks 08 and 10 leave to the helpers, on injected devices: one last rung shared by both (its
dtype and why), which form of bfloat16 differs from it, TF32, the blog's compile, int8, and the runs per measurement.

A T4 is CUDA capability (7, 5), an A100 (8, 0), an H100 (9, 0); a CPU with and without bfloat16 is a
``CpuFeatures``; MPS needs nothing injected. No test needs the device it asks about.
"""

import pytest
import torch

import helpers as h
from helpers import settings
from helpers.errors import QuantizationUnavailableError
from helpers.precision import CpuFeatures

T4, A100, H100 = (7, 5), (8, 0), (9, 0)
CPU_WITH_BF16 = CpuFeatures(avx512_bf16=True, amx=False)
CPU_WITH_AMX = CpuFeatures(avx512_bf16=False, amx=True)
CPU_WITHOUT_BF16 = CpuFeatures(avx512_bf16=False, amx=False)


@pytest.fixture(autouse=True)
def a_readers_machine(monkeypatch):
    monkeypatch.delenv("AUDIOLDM2_TESTS_HALF_ON_CPU", raising=False)
    monkeypatch.delenv(settings.SMOKE_ENV, raising=False)
    monkeypatch.delenv(settings.FULL_ENV, raising=False)


# ---------------------------------------------------------------------------------------------------------------
# bfloat16 in notebook 10: only a form that differs from the last rung gets a row
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device, kwargs, forms, words", [
    ("cuda", {"capability": A100}, ("weights",), "against the last rung's float16"),
    ("cuda", {"capability": H100}, ("weights",), "against the last rung's float16"),
    ("cpu", {"cpu": CPU_WITH_BF16}, ("autocast",), "already has bfloat16 weights"),
    ("cpu", {"cpu": CPU_WITH_AMX}, ("autocast",), "already has bfloat16 weights"),
])
def test_bfloat16_is_measured_in_the_form_the_last_rung_lacks(device, kwargs, forms, words):
    baseline = h.precision.ladder_dtype(device, **kwargs)
    found, why = h.precision.bfloat16_forms(device, baseline, **kwargs)
    assert found == forms and words in why


def test_a_float32_last_rung_on_a_bfloat16_cpu_gets_both_forms():
    forms, why = h.precision.bfloat16_forms("cpu", torch.float32, cpu=CPU_WITH_BF16)
    assert set(forms) == {"weights", "autocast"} and "float32" in why


@pytest.mark.parametrize("device, kwargs, words", [
    ("cuda", {"capability": T4}, "capability 7.5"),
    ("mps", {}, "float16 is the Apple GPU's half type"),
    ("cpu", {"cpu": CPU_WITHOUT_BF16}, "emulated"),
])
def test_bfloat16_is_skipped_with_one_line_where_it_would_be_emulated(device, kwargs, words):
    forms, why = h.precision.bfloat16_forms(device, h.precision.ladder_dtype(device, **kwargs), **kwargs)
    assert forms == () and words in why and "\n" not in why


@pytest.mark.parametrize("device, capability, runs, words", [
    ("cuda", A100, True, "capability 8.0"),
    ("cuda", H100, True, "capability 9.0"),
    ("cuda", T4, False, "no TF32 tensor cores"),
    ("cpu", None, False, "this is cpu"),
    ("mps", None, False, "this is mps"),
])
def test_tf32_is_measured_only_where_tensor_cores_compute_it(device, capability, runs, words):
    found, why = h.precision.tf32_support(device, capability=capability)
    assert found is runs and words in why


# ---------------------------------------------------------------------------------------------------------------
# The blog's compile (08's rung 5, 10's compiled group)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_the_blogs_compile_is_a_cuda_lesson(device):
    def never(_):
        raise AssertionError("off CUDA, Inductor's own checks are not the question")

    ok, why = h.compiling.blog_compile_support(device, support=never)
    assert not ok and "CUDA graphs" in why and f"this is {device}" in why


def test_on_cuda_the_blogs_compile_asks_what_inductor_needs():
    asked = []

    def support(device):
        asked.append(device)
        return False, "Tesla P100 has CUDA capability 6.0; Inductor's Triton kernels need 7.0 or more"

    assert h.compiling.blog_compile_support("cuda", support=support) == (False, support(None)[1])
    assert asked[0] == torch.device("cuda")


# ---------------------------------------------------------------------------------------------------------------
# int8 in notebook 10
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device, dtype, method", [
    ("cpu", torch.float32, "dynamic"),
    ("cpu", torch.bfloat16, "torchao"),  # PyTorch's dynamic int8 refuses bfloat16 activations
    ("cuda", torch.float16, "torchao"),
    ("mps", torch.float16, "torchao"),
])
def test_int8_picks_the_quantisation_this_unet_takes(device, dtype, method):
    found, why = h.quantizing.int8_method(device, dtype)
    assert found == method and "\n" not in why


def test_int8_copy_quantises_a_copy_and_refuses_an_unknown_method():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    quantized = h.quantizing.int8_copy(model, "dynamic")
    assert isinstance(model[0], torch.nn.Linear) and not isinstance(quantized[0], torch.nn.Linear)
    assert quantized(torch.randn(2, 8)).shape == (2, 8)
    with pytest.raises(ValueError, match="int8_method"):
        h.quantizing.int8_copy(model, "int4")


def test_int8_without_torchao_says_so_in_one_line(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None if name == "torchao" else object())
    with pytest.raises(QuantizationUnavailableError, match="pip install torchao"):
        h.quantizing.int8_copy(torch.nn.Linear(4, 4), "torchao")


# ---------------------------------------------------------------------------------------------------------------
# Runs per measurement, and the lines under notebook 10's table
# ---------------------------------------------------------------------------------------------------------------
def test_a_ladder_rung_warms_up_on_a_gpu_and_only_a_fresh_pipeline_does_in_the_cpu_profile():
    gpu = h.settings.ladder_runs(profile=False)
    assert (gpu.warmup, gpu.repeats) == (1, 3)
    assert h.settings.ladder_runs(profile=False, fresh_pipeline=True) == gpu
    cpu = h.settings.ladder_runs(profile=True)
    assert (cpu.warmup, cpu.repeats) == (0, 2) and "measured twice" in cpu.why
    fresh = h.settings.ladder_runs(profile=True, fresh_pipeline=True)
    assert (fresh.warmup, fresh.repeats) == (1, 2)
    assert cpu.as_kwargs() == {"warmup": 0, "repeats": 2}
    assert str(cpu).startswith("2 timed runs after 0 warm-up calls: ")


def test_smoke_mode_takes_one_timed_run(monkeypatch):
    monkeypatch.setenv(settings.SMOKE_ENV, "1")
    assert h.settings.ladder_runs().repeats == 1 and h.settings.sweep_runs().repeats == 1


def test_a_sweep_times_each_point_once_in_the_cpu_profile():
    assert h.settings.sweep_runs(profile=False).as_kwargs() == {"warmup": 1, "repeats": 3}
    assert h.settings.sweep_runs(profile=True).as_kwargs() == {"warmup": 0, "repeats": 1}


def test_the_sound_columns_say_when_they_are_a_solvers_sketch(monkeypatch):
    monkeypatch.setattr(settings, "cpu_profile", lambda: True)
    sketch = h.settings.sound_columns_note(20)
    assert "4 steps (the blog: 20)" in sketch and "sketch" in sketch and "at 20 steps" in sketch
    monkeypatch.setattr(settings, "cpu_profile", lambda: False)
    assert "sketch" not in h.settings.sound_columns_note(20) and "20 steps" in h.settings.sound_columns_note(20)


@pytest.mark.parametrize("device, words", [("cuda", "reserved"), ("mps", "Metal driver"), ("cpu", "resident")])
def test_what_peak_memory_means_is_said_for_each_device(device, words):
    line = h.memory.what_peak_memory_reads(device).rows
    assert words in line and "\n" not in line
