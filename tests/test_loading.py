"""The loader: runs hub-shaped checkpoints on today's libraries, and fails clearly."""

import json

import numpy as np
import pytest
import torch

from helpers import loading, precision, settings
from helpers.errors import (
    HalfPrecisionOnCPUError,
    NoGPUError,
    NoNetworkError,
    NotAnAudioLDM2CheckpointError,
    UnknownCheckpointError,
)


def test_plain_from_pretrained_still_breaks_on_a_gpt2model_checkpoint(tiny_checkpoint):
    """The bug the loader works around. If this starts passing, the workaround may be dropped."""
    from diffusers import AudioLDM2Pipeline

    pipe = AudioLDM2Pipeline.from_pretrained(tiny_checkpoint)
    with pytest.raises(AttributeError, match="_update_model_kwargs_for_generation"):
        pipe("a dog barking", num_inference_steps=1, audio_length_in_s=0.64)


def test_loader_gives_163840_samples_for_10_24_seconds(tiny_pipe):
    from transformers import GPT2LMHeadModel

    assert isinstance(tiny_pipe.language_model, GPT2LMHeadModel)
    audio = tiny_pipe("Techno music", num_inference_steps=2, audio_length_in_s=10.24,
                      generator=torch.Generator("cpu").manual_seed(0)).audios
    assert audio.shape == (1, 163_840)


def test_ranking_several_waveforms_per_prompt_runs(tiny_pipe):
    audio = tiny_pipe("rain on a roof", num_inference_steps=1, audio_length_in_s=2.56,
                      num_waveforms_per_prompt=2).audios
    assert audio.shape == (2, 40_960)


def test_model_id_defaults_to_the_environment_variable(monkeypatch, tiny_checkpoint):
    monkeypatch.setenv("AUDIOLDM2_MODEL", str(tiny_checkpoint))
    assert loading.resolve_checkpoint() == str(tiny_checkpoint)
    monkeypatch.delenv("AUDIOLDM2_MODEL")
    assert settings.model_id() == "cvssp/audioldm2"


def test_tiny_keyword_builds_a_cached_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOLDM2_CACHE", str(tmp_path))
    path = loading.resolve_checkpoint("tiny")
    assert path == str(tmp_path / "tiny-random")
    loading.check_checkpoint_folder(tmp_path / "tiny-random")


def test_no_network_fails_at_once_with_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "_in_hub_cache", lambda model_id: False)  # as on a fresh machine
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(loading, "HUB_HOST", "hub.invalid")  # a name that never resolves
    with pytest.raises(NoNetworkError, match="AUDIOLDM2_MODEL=tiny"):
        loading.load_pipeline("cvssp/audioldm2", device="cpu")


def test_offline_mode_counts_as_no_network(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "_in_hub_cache", lambda model_id: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NoNetworkError, match="cannot be reached"):
        loading.resolve_checkpoint("cvssp/audioldm2-music")


@pytest.mark.parametrize("model_id", ["cvssp/audioldm3", "./no/such/folder", "not-a-model"])
def test_an_unknown_checkpoint_is_refused_naming_the_real_ones(model_id):
    with pytest.raises(UnknownCheckpointError, match="cvssp/audioldm2-large"):
        loading.load_pipeline(model_id, device="cpu")


def test_a_folder_without_model_index_is_refused_as_not_a_pipeline(tmp_path):
    with pytest.raises(NotAnAudioLDM2CheckpointError, match="no model_index.json"):
        loading.load_pipeline(tmp_path, device="cpu")


def test_a_folder_of_another_pipeline_is_refused_naming_its_class(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(NotAnAudioLDM2CheckpointError, match="StableDiffusionPipeline"):
        loading.load_pipeline(tmp_path, device="cpu")


def test_an_incomplete_checkpoint_folder_names_the_missing_subfolders(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "AudioLDM2Pipeline"}))
    (tmp_path / "unet").mkdir()
    with pytest.raises(NotAnAudioLDM2CheckpointError, match="vocoder"):
        loading.load_pipeline(tmp_path, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_asked_for_without_a_gpu(tiny_checkpoint):
    with pytest.raises(NoGPUError, match="Change runtime type"):
        loading.load_pipeline(tiny_checkpoint, device="cuda")


@pytest.mark.parametrize("dtype, fast_bfloat16", [(torch.float16, True), (torch.bfloat16, False)])
def test_half_precision_a_cpu_would_emulate_is_refused(tiny_checkpoint, dtype, fast_bfloat16, monkeypatch):
    monkeypatch.delenv("AUDIOLDM2_TESTS_HALF_ON_CPU")  # a reader's CPU, not the tests'
    monkeypatch.setattr(precision.CpuFeatures, "of_this_machine",
                        classmethod(lambda cls: cls(avx512_bf16=fast_bfloat16, amx=False)))
    assert not precision.half_precision_runs_here("cpu", dtype)
    with pytest.raises(HalfPrecisionOnCPUError, match="emulated, slower than float32"):
        loading.load_pipeline(tiny_checkpoint, torch_dtype=dtype, device="cpu")


def test_bfloat16_loads_on_a_cpu_that_computes_it(tiny_checkpoint, monkeypatch):
    monkeypatch.delenv("AUDIOLDM2_TESTS_HALF_ON_CPU")
    monkeypatch.setattr(precision.CpuFeatures, "of_this_machine", classmethod(lambda cls: cls(avx512_bf16=False, amx=True)))
    pipe = loading.load_pipeline(tiny_checkpoint, torch_dtype=torch.bfloat16, device="cpu")
    assert pipe.unet.dtype == torch.bfloat16


def test_the_tests_switch_runs_half_precision_on_a_cpu_with_finite_results(tiny_checkpoint):
    # CI has no GPU; this is how its notebooks run their float16 and bfloat16 code (conftest sets the switch).
    from helpers.generating import generate

    assert precision.half_precision_runs_here("cpu") and precision.half_precision_runs_here("cpu", torch.bfloat16)
    for dtype in (torch.float16, torch.bfloat16):
        pipe = loading.load_pipeline(tiny_checkpoint, torch_dtype=dtype, device="cpu")
        assert pipe.unet.dtype == dtype
        audios = generate(pipe, num_inference_steps=2, audio_length_in_s=1.28, negative_prompt="Low quality")
        assert np.isfinite(audios).all() and audios.shape == (1, 20_480)


def test_offload_loads_half_precision_in_host_memory_for_the_gpu(tiny_checkpoint, monkeypatch):
    # The usual low-memory recipe: float16 weights wait in host memory, the GPU computes. No GPU here, so the
    # device check answers "cuda" and the offload call is recorded instead of made.
    from diffusers import AudioLDM2Pipeline

    monkeypatch.delenv("AUDIOLDM2_TESTS_HALF_ON_CPU")  # a reader's machine
    monkeypatch.setattr(loading, "check_device", lambda device: torch.device("cuda"))
    offloaded_to = []
    monkeypatch.setattr(AudioLDM2Pipeline, "enable_model_cpu_offload",
                        lambda pipe, device: offloaded_to.append(torch.device(device)))
    pipe = loading.load_pipeline(tiny_checkpoint, torch_dtype=torch.float16, device="cuda", cpu_offload=True)
    assert offloaded_to == [torch.device("cuda")]
    assert pipe.unet.dtype == torch.float16 and pipe.unet.device.type == "cpu"  # waits in host memory


def test_offload_without_a_gpu_says_there_is_nothing_to_offload_to(tiny_checkpoint):
    with pytest.raises(NoGPUError, match="nothing to offload to"):
        loading.load_pipeline(tiny_checkpoint, device="cpu", cpu_offload=True)
