"""One bfloat16 story: which device computes which half precision natively, from injected capabilities.

A T4 (CUDA 7.5) emulates bfloat16 although ``torch.cuda.is_bf16_supported()`` says True; an A100 (8.0) computes
it; a CPU computes it only with AVX512-BF16 or AMX, although oneDNN's own check says True on any AVX-512 CPU.
"""

import pytest
import torch

import helpers as h
from helpers.precision import CpuFeatures

T4, A100 = (7, 5), (8, 0)
PLAIN_AVX512 = CpuFeatures(avx512_bf16=False, amx=False)  # Skylake to Ice Lake servers
ZEN4 = CpuFeatures(avx512_bf16=True, amx=False)
SAPPHIRE_RAPIDS = CpuFeatures(avx512_bf16=True, amx=True)


@pytest.fixture(autouse=True)
def a_readers_machine(monkeypatch):
    monkeypatch.delenv("AUDIOLDM2_TESTS_HALF_ON_CPU", raising=False)


@pytest.mark.parametrize("capability, bfloat16", [(T4, False), (A100, True), ((9, 0), True)])
def test_a_cuda_gpu_computes_float16_and_bfloat16_from_ampere_on(capability, bfloat16):
    assert h.precision.computes_natively("cuda", torch.float16, capability=capability)
    assert h.precision.computes_natively("cuda", torch.bfloat16, capability=capability) is bfloat16
    assert h.precision.half_precision_runs_here("cuda", torch.bfloat16, capability=capability) is bfloat16
    assert h.precision.half_precision_for("cuda", capability=capability) == torch.float16


def test_a_t4_is_told_why_bfloat16_does_not_pay():
    assert "capability 7.5" in h.precision.why_not("cuda", torch.bfloat16, capability=T4)


@pytest.mark.parametrize("cpu, bfloat16", [(PLAIN_AVX512, False), (ZEN4, True), (SAPPHIRE_RAPIDS, True),
                                           (CpuFeatures(avx512_bf16=False, amx=True), True)])
def test_a_cpu_computes_bfloat16_only_with_avx512_bf16_or_amx(cpu, bfloat16):
    assert h.precision.cpu_has_fast_bfloat16(cpu) is bfloat16
    assert h.precision.half_precision_runs_here("cpu", torch.bfloat16, cpu=cpu) is bfloat16
    assert h.precision.half_precision_for("cpu", cpu=cpu) == (torch.bfloat16 if bfloat16 else None)
    assert not h.precision.half_precision_runs_here("cpu", torch.float16, cpu=cpu)  # no CPU here computes float16
    assert h.precision.bfloat16_autocast_pays("cpu", torch.float32, cpu=cpu) is bfloat16
    assert not h.precision.bfloat16_autocast_pays("cpu", torch.bfloat16, cpu=cpu)  # already half: nothing to do


def test_the_cpus_flags_are_read_from_torch_not_from_onednn(monkeypatch):
    # oneDNN's _is_mkldnn_bf16_supported() says True on any AVX-512 CPU; the decision must not follow it.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert not h.precision.cpu_has_fast_bfloat16()
    assert isinstance(h.precision.autocast_for("cpu", torch.float32), type(__import__("contextlib").nullcontext()))
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert h.precision.cpu_has_fast_bfloat16()
    assert isinstance(h.precision.autocast_for("cpu", torch.float32), torch.autocast)


def test_an_apple_gpu_runs_float16():
    assert h.precision.half_precision_runs_here("mps") and not h.precision.half_precision_runs_here("mps", torch.bfloat16)
    assert h.precision.half_precision_for("mps") == torch.float16
    assert not isinstance(h.precision.autocast_for("cuda", torch.float32), torch.autocast)


def test_the_ladder_dtype_is_notebook_04s_choice_on_every_device():
    no_bf16, bf16 = h.precision.CpuFeatures(avx512_bf16=False, amx=False), h.precision.CpuFeatures(avx512_bf16=True, amx=False)
    assert h.precision.ladder_dtype("cuda", capability=(7, 5)) == torch.float16  # a T4
    assert h.precision.ladder_dtype("cuda", capability=(9, 0)) == torch.float16
    assert h.precision.ladder_dtype("mps") == torch.float16
    assert h.precision.ladder_dtype("cpu", cpu=bf16) == torch.bfloat16
    assert h.precision.ladder_dtype("cpu", cpu=no_bf16) == torch.float32
