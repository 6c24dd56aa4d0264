"""The full-size random checkpoint: the real architecture, loaded through the loader (slow: minutes).

Built once into the cache (``$AUDIOLDM2_CACHE`` or ~/.cache/audioldm2-faster), ~4.2 GB.
Skip with ``pytest -m "not slow"``.
"""

import pytest
import torch

from helpers.checkpoints import cached_checkpoint, describe_checkpoint
from helpers.loading import load_pipeline

BUILDS_AND_LOADS = ("builds the full-size random checkpoint once (1.1 B parameters, ~4.2 GB, ~40 s) and loads it, "
                    "then runs it on the CPU: ~10 GB of RAM, a minute or more")


@pytest.fixture(scope="module")
def full_size_pipe():
    """Loaded once for both tests (each load reads ~4.2 GB)."""
    path = cached_checkpoint("full-size", "base")
    assert describe_checkpoint(path).kind == "full-size"
    return load_pipeline(path, device="cpu")


@pytest.mark.slow(reason=BUILDS_AND_LOADS)
def test_full_size_checkpoint_runs_to_163840_samples(full_size_pipe):
    pipe = full_size_pipe
    parameters = sum(p.numel() for name in ("unet", "vae", "vocoder", "text_encoder", "text_encoder_2",
                                            "language_model", "projection_model")
                     for p in getattr(pipe, name).parameters())
    assert parameters == pytest.approx(1.118e9, rel=0.01)  # the model card says 1.1 B
    audio = pipe("Techno music", num_inference_steps=2, audio_length_in_s=10.24,
                 generator=torch.Generator("cpu").manual_seed(0)).audios
    assert audio.shape == (1, 163_840)


@pytest.mark.slow(reason=BUILDS_AND_LOADS)
def test_full_size_random_weights_stay_far_inside_float16s_range(full_size_pipe):
    # Random weights could overflow float16 (65504) where trained ones do not; the course's must not, or notebook
    # 04's float16 clip would be NaN for a reason the real model does not have. Every module's output, float32.
    from torch.utils._pytree import tree_leaves

    pipe = full_size_pipe
    largest: dict[str, float] = {}

    def record(name):
        def hook(module, inputs, output):
            values = [t.detach().abs().max().item() for t in tree_leaves(output)
                      if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()]
            largest[name] = max([largest.get(name, 0.0), *values])
        return hook

    handles = [module.register_forward_hook(record(f"{component}.{name}"))
               for component in ("text_encoder", "text_encoder_2", "projection_model", "language_model", "unet",
                                 "vae", "vocoder")
               for name, module in getattr(pipe, component).named_modules()]
    try:
        pipe("Techno music", negative_prompt="Low quality", num_inference_steps=2, audio_length_in_s=2.56,
             generator=torch.Generator("cpu").manual_seed(0))
    finally:
        for handle in handles:
            handle.remove()
    assert len(largest) > 1000  # every module of every component ran, or the check proves nothing
    name, value = max(largest.items(), key=lambda item: item[1])
    assert value < torch.finfo(torch.float16).max / 100, f"{name} reached {value:g}"


@pytest.mark.slow(reason=BUILDS_AND_LOADS)
def test_full_size_gpt2_from_a_static_cache_gives_the_pipelines_vectors(full_size_pipe):
    from helpers.gpt2 import StaticGPT2, pipeline_calls

    static = StaticGPT2(full_size_pipe.language_model)
    for inputs_embeds, mask, expected in pipeline_calls(full_size_pipe):
        with torch.no_grad():
            got = static(inputs_embeds, attention_mask=mask)
        assert got.shape == expected.shape == (1, 8, 768)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
