"""Notebooks 09 and 10's helpers on the tiny checkpoint: each technique does what it says, and changes the sound
only where it means to."""

import numpy as np
import pytest
import torch

import helpers as h
from helpers.stages import STAGES

STEPS, SECONDS = 3, 1.28


@pytest.fixture()
def pipe(tiny_checkpoint):
    from diffusers import DPMSolverMultistepScheduler

    pipe = h.load_pipeline(tiny_checkpoint, device="cpu")
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    return pipe


def _clip(pipe, prompt=h.settings.PROMPT, steps=STEPS, **kwargs):
    kwargs.setdefault("negative_prompt", h.settings.NEGATIVE_PROMPT)
    return h.generate(pipe, prompt, num_inference_steps=steps, audio_length_in_s=SECONDS, **kwargs)


@pytest.mark.parametrize("prompt, negative_prompt", [
    (h.settings.PROMPT, h.settings.NEGATIVE_PROMPT),  # negative shorter than the prompt
    ("a dog barks", h.settings.NEGATIVE_PROMPT),  # longer: the pipeline cuts it to the prompt's length
])
def test_encode_prompts_gives_the_pipelines_own_numbers(pipe, prompt, negative_prompt):
    with torch.no_grad():
        embeds, mask, generated = pipe.encode_prompt(prompt, "cpu", 1, True, negative_prompt=negative_prompt)
    ours = h.prompts.encode_prompts(pipe, prompt, negative_prompt)
    torch.testing.assert_close(ours["generated_prompt_embeds"], generated[1:])
    torch.testing.assert_close(ours["negative_generated_prompt_embeds"], generated[:1])
    torch.testing.assert_close(ours["prompt_embeds"], embeds[1:])
    assert torch.equal(ours["negative_attention_mask"], mask[:1])


def test_batch_prompt_encoding_calls_each_text_model_once_and_keeps_the_clip(pipe):
    before = _clip(pipe)
    calls = []
    handle = pipe.text_encoder_2.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    h.prompts.batch_prompt_encoding(pipe)
    after = _clip(pipe)
    handle.remove()
    assert calls == [2]  # one call, on a batch of two (the pipeline makes two calls of one)
    np.testing.assert_allclose(after, before, atol=1e-5)
    several = h.generate(pipe, ["a", "b"], negative_prompt=["c", "d"], num_inference_steps=2, audio_length_in_s=SECONDS)
    assert several.shape[0] == 2  # lists go to the pipeline's own encoder
    del pipe.encode_prompt


def test_deep_cache_skips_the_deep_blocks_on_alternate_steps_and_undoes_cleanly(pipe):
    reference = _clip(pipe)
    mid_calls = []
    handle = pipe.unet.mid_block.resnets[0].register_forward_hook(lambda *args: mid_calls.append(1))
    state = h.deep_cache.apply_deep_cache(pipe.unet, interval=1)
    np.testing.assert_array_equal(_clip(pipe), reference)  # every step in full: the same clip
    h.deep_cache.remove_deep_cache(pipe.unet)
    mid_calls.clear()
    state = h.deep_cache.apply_deep_cache(pipe.unet, interval=2)
    cached = _clip(pipe)
    assert (state.full_steps, state.cached_steps) == (2, 1)
    assert len(mid_calls) == 2  # the mid block's layers ran on the full steps only
    assert not np.array_equal(cached, reference) and np.isfinite(cached).all()
    _clip(pipe)  # a second generation starts over: its first step runs in full
    assert (state.full_steps, state.cached_steps) == (4, 2)
    h.deep_cache.remove_deep_cache(pipe.unet)
    handle.remove()
    np.testing.assert_array_equal(_clip(pipe), reference)
    with pytest.raises(ValueError, match="interval"):
        h.deep_cache.apply_deep_cache(pipe.unet, interval=0)


def test_fuse_qkv_fuses_what_diffusers_call_does_not_with_the_same_output(pipe):
    reference = _clip(pipe)
    pipe.unet.fuse_qkv_projections()
    assert h.fusing.fused_modules(pipe.unet) == 0  # this UNet's attention modules are the legacy class
    count = h.fusing.fuse_qkv(pipe.unet)
    assert count > 0 and h.fusing.fused_modules(pipe.unet) == count
    np.testing.assert_allclose(_clip(pipe), reference, atol=1e-5)
    h.fusing.unfuse_qkv(pipe.unet)
    assert h.fusing.fused_modules(pipe.unet) == 0
    np.testing.assert_allclose(_clip(pipe), reference, atol=1e-5)


def test_stage_flops_counts_every_stage_and_the_unet_per_step(pipe):
    two = h.flops.stage_flops(pipe, lambda: _clip(pipe, steps=2))
    four = h.flops.stage_flops(pipe, lambda: _clip(pipe, steps=4))
    assert set(two) == set(STAGES)
    assert all(two[stage] > 0 for stage in ("CLAP text encoder", "UNet", "VAE decoder", "vocoder"))
    assert four["UNet"] == pytest.approx(2 * two["UNet"])  # the UNet's work grows with the steps
    assert four["VAE decoder"] == two["VAE decoder"]  # the decoder runs once either way


def test_peak_flops_per_s_is_a_rate(monkeypatch):
    clock = iter([10.0, 13.0, 20.0, 22.0, 30.0, 34.0])  # three trials: 3, 2 and 4 seconds
    monkeypatch.setattr(h.flops.time, "perf_counter", lambda: next(clock))
    assert h.flops.peak_flops_per_s("cpu", size=64, repeats=5) == pytest.approx(2 * 64**3 * 5 / 2.0)  # the best


def test_profile_stages_names_each_stage_and_writes_a_trace(pipe, tmp_path):
    trace = tmp_path / "trace.json"
    profiler = h.stages.profile_stages(pipe, lambda: _clip(pipe, steps=2), "cpu", trace_path=trace)
    names = {event.key for event in profiler.key_averages()}
    assert set(STAGES) <= names
    assert trace.stat().st_size > 0 and "GPT-2" in trace.read_text()


def test_clap_score_is_a_cosine(pipe):
    audio = _clip(pipe)[0]
    score = h.clap_score(pipe, audio, h.settings.PROMPT)
    assert -1.0 <= score <= 1.0
    assert h.clap_score(pipe, audio, h.settings.PROMPT) == pytest.approx(score)


def test_plot_stages_stacks_every_stage(pipe):
    import matplotlib

    matplotlib.use("Agg")
    times = h.stages.time_stages(pipe, lambda: _clip(pipe), "cpu", steps=STEPS)
    ax = h.plot_stages({"a": times, "b": times})
    assert len(ax.patches) == 2 * (len(STAGES) + 1)


def test_the_recipe_on_a_cpu_batches_the_prompts_and_caches_deep_features(pipe, monkeypatch):
    monkeypatch.setattr(h.precision.CpuFeatures, "of_this_machine", classmethod(lambda cls: cls(False, False)))
    changes = h.recipe.apply_beyond_the_blog(pipe, "cpu")
    assert changes == ["prompts in one batch", "deep features reused every 2nd step"]
    with h.precision.autocast_for("cpu", pipe.dtype):
        clip = _clip(pipe)
    assert np.isfinite(clip).all()
    monkeypatch.setattr(h.precision.CpuFeatures, "of_this_machine", classmethod(lambda cls: cls(True, False)))
    assert isinstance(h.precision.autocast_for("cpu", torch.float32), torch.autocast)
    assert not isinstance(h.precision.autocast_for("cpu", torch.float16), torch.autocast)  # a half pipeline: no
    assert not isinstance(h.precision.autocast_for("cuda", torch.float32), torch.autocast)
