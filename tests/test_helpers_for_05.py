"""The helpers notebook 05 calls to decide, per device, what it compiles the UNet with and in which dtype.

Fast: nothing compiles; every device and every answer of compile_support is injected (a T4, an A100, an H100,
an Apple GPU, a CPU with and without bfloat16), so these run the same on any machine.
"""

import pytest
import torch

from helpers import compiling, precision

OK = (True, "found what it needs")
T4, A100, H100 = (7, 5), (8, 0), (9, 0)
CPU_WITH_BF16 = precision.CpuFeatures(avx512_bf16=True, amx=False)
CPU_WITHOUT_BF16 = precision.CpuFeatures(avx512_bf16=False, amx=False)


@pytest.mark.parametrize("capability", [T4, A100, H100])
def test_a_cuda_gpu_that_inductor_runs_on_compiles_as_the_blog(capability):
    ok, reason = capability >= compiling.TRITON_MIN_CAPABILITY, f"capability {capability}"
    choice = compiling.choose_compile("cuda", inductor=(ok, reason), dynamo=OK, smoke=False)
    assert (choice.backend, choice.mode) == ("inductor", "reduce-overhead")
    assert choice.label == "mode='reduce-overhead'"
    assert "CUDA graphs" in str(choice) and "as the blog" in str(choice)
    # a smoke run on a GPU compiles the same: Triton compiles in a minute, and the lesson is the blog's line
    assert compiling.choose_compile("cuda", inductor=(ok, reason), dynamo=OK, smoke=True) == choice


def test_a_gpu_too_old_for_triton_falls_back_to_dynamo_alone_and_says_why():
    why = "Tesla P100 has CUDA capability 6.0; Inductor's Triton kernels need 7.0 or more."
    choice = compiling.choose_compile("cuda", inductor=(False, why), dynamo=OK, smoke=False)
    assert (choice.backend, choice.mode) == ("eager", None)
    assert why in choice.why and "no speed-up" in choice.why


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_off_cuda_the_mode_is_default_since_there_are_no_cuda_graphs(device):
    choice = compiling.choose_compile(device, inductor=OK, dynamo=OK, smoke=False)
    assert (choice.backend, choice.mode) == ("inductor", "default")
    assert f"CUDA graphs do not apply to {device}" in choice.why
    assert choice.label == "mode='default'"


def test_a_smoke_run_off_cuda_captures_with_dynamo_alone():
    choice = compiling.choose_compile("cpu", inductor=OK, dynamo=OK, smoke=True)
    assert (choice.backend, choice.mode) == ("eager", None)
    assert choice.label == "backend='eager', Dynamo alone"
    assert choice.why.startswith("a smoke run off CUDA")


def test_without_a_cxx_compiler_the_cpu_uses_dynamo_alone():
    missing = (False, "found no working C++ compiler (g++): apt install g++")
    choice = compiling.choose_compile("cpu", inductor=missing, dynamo=OK, smoke=False)
    assert choice.backend == "eager" and "apt install g++" in choice.why


def test_where_dynamo_cannot_run_nothing_compiles():
    no_dynamo = (False, "torch 2.13 does not support torch.compile on Python 3.14.")
    choice = compiling.choose_compile("cpu", inductor=no_dynamo, dynamo=no_dynamo, smoke=False)
    assert (choice.backend, choice.mode, choice.label) == (None, None, "not compiled")
    assert "Python 3.14" in choice.why and "stays eager" in choice.why


def test_it_asks_compile_support_itself_when_not_told(monkeypatch):
    asked = []

    def support(device, *, backend="inductor"):
        asked.append(backend)
        return OK

    monkeypatch.setattr(compiling, "compile_support", support)
    monkeypatch.setenv("AUDIOLDM2_SMOKE", "0")
    assert compiling.choose_compile("cpu").mode == "default"
    assert asked == ["inductor", "eager"]


@pytest.mark.parametrize("device, capability, cpu, dtype", [
    ("cuda", T4, None, torch.float16),
    ("cuda", A100, None, torch.float16),
    ("mps", None, None, torch.float16),
    ("cpu", None, CPU_WITH_BF16, torch.bfloat16),
    ("cpu", None, CPU_WITHOUT_BF16, torch.float32),
])
def test_05_compiles_the_dtype_of_the_ladder(device, capability, cpu, dtype):
    """Notebook 05 loads h.precision.ladder_dtype(device), the dtype every notebook after 04 uses."""
    assert precision.ladder_dtype(device, capability=capability, cpu=cpu) == dtype


def test_only_the_warning_about_diffusers_cached_version_check_is_hidden():
    import warnings

    def dynamo_says(where):
        return (f"Dynamo detected a call to a `functools.lru_cache`-wrapped function at '{where}'. Dynamo ignores the "
                "cache wrapper and directly traces the wrapped function.")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiling.quiet_traced_version_checks()
        warnings.warn(dynamo_says("upsampling.py:156"), UserWarning)
        warnings.warn(dynamo_says("attention.py:12"), UserWarning)
    assert [str(warning.message) for warning in caught] == [dynamo_says("attention.py:12")]
