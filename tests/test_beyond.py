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
    (["a dog barks", h.settings.PROMPT, "rain"],  # three T5 lengths: padded to the longest, as the pipeline does
     [h.settings.NEGATIVE_PROMPT, "", "thunder and a very loud crowd cheering far away"]),
])
def test_encode_prompts_gives_the_pipelines_own_numbers(pipe, prompt, negative_prompt):
    n = 1 if isinstance(prompt, str) else len(prompt)
    with torch.no_grad():
        embeds, mask, generated = pipe.encode_prompt(prompt, "cpu", 1, True, negative_prompt=negative_prompt)
    ours = h.prompts.encode_prompts(pipe, prompt, negative_prompt)  # the pipeline joins them negatives first
    torch.testing.assert_close(ours["generated_prompt_embeds"], generated[n:])
    torch.testing.assert_close(ours["negative_generated_prompt_embeds"], generated[:n])
    torch.testing.assert_close(ours["prompt_embeds"], embeds[n:])
    torch.testing.assert_close(ours["negative_prompt_embeds"], embeds[:n])
    assert torch.equal(torch.cat([ours["negative_attention_mask"], ours["attention_mask"]]), mask)


def test_batch_prompt_encoding_calls_each_text_model_once_and_keeps_the_clip(pipe):
    before = _clip(pipe)
    calls = []
    handle = pipe.text_encoder_2.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    h.prompts.batch_prompt_encoding(pipe)
    after = _clip(pipe)
    handle.remove()
    assert calls == [2]  # one call, on a batch of two (the pipeline makes two calls of one)
    np.testing.assert_allclose(after, before, atol=1e-5)
    del pipe.encode_prompt


def test_batch_prompt_encoding_takes_a_batch_of_prompts_in_one_call_and_keeps_every_clip(pipe):
    def clips():
        out = pipe(["a dog barks", "rain"], negative_prompt=["c", h.settings.NEGATIVE_PROMPT], num_inference_steps=2,
                   audio_length_in_s=SECONDS, generator=[torch.Generator().manual_seed(seed) for seed in (1, 2)])
        return out.audios

    before = clips()
    calls = []
    handle = pipe.text_encoder_2.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    h.prompts.batch_prompt_encoding(pipe)
    after = clips()
    handle.remove()
    assert calls == [4]  # two prompts and their two negative prompts, one call
    np.testing.assert_allclose(after, before, atol=1e-5)
    with pytest.raises(ValueError, match="negative_prompt"):  # lists of different lengths: the pipeline's own error
        pipe(["a", "b"], negative_prompt=["c"], num_inference_steps=1, audio_length_in_s=SECONDS)
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
    left = []  # what the kept block's output was, at each full step: the cache must hold a copy, not it
    keep = pipe.unet.up_blocks[-2].register_forward_hook(lambda module, args, out: left.append(out.data_ptr()))
    features = []
    copy = pipe.unet.register_forward_hook(lambda *args: features.append(state.features.data_ptr()))
    cached = _clip(pipe)
    keep.remove(), copy.remove()
    assert features[0] != left[0] and features[2] != left[2]  # full steps: a copy (a graph's replay reuses its own)
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


def test_deep_cache_on_a_compiled_unet_keeps_two_graphs_and_the_eager_clip(pipe):
    """Rung 8 on a GPU: DeepCache beside the compiled UNet. The step count lives outside the graph, so Dynamo keeps
    one graph for a full step and one for a shallow step, not one per count (Dynamo alone here: Inductor compiles
    the same two graphs in about a minute on 2 cores)."""
    state = h.deep_cache.apply_deep_cache(pipe.unet, interval=2)
    eager = _clip(pipe, steps=4)
    h.deep_cache.remove_deep_cache(pipe.unet)
    pipe.unet = torch.compile(pipe.unet, fullgraph=True, backend="eager")  # a break or a recompile would show
    graphs = h.compiling.compiled_graphs()
    state = h.deep_cache.apply_deep_cache(pipe.unet, interval=2)
    first, second = _clip(pipe, steps=4), _clip(pipe, steps=4)
    assert h.compiling.compiled_graphs() - graphs == 2  # full and shallow, over 8 UNet calls
    assert (state.full_steps, state.cached_steps) == (4, 4)
    np.testing.assert_allclose(first, eager, atol=1e-6)
    np.testing.assert_allclose(second, eager, atol=1e-6)
    h.deep_cache.remove_deep_cache(pipe.unet)
    assert not pipe.unet._forward_pre_hooks  # the step's decision is off the compiled module too
    torch._dynamo.reset()


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


def test_rung_7_on_a_cpu_keeps_rung_6s_clip_and_rung_8_is_the_approximation(pipe, monkeypatch):
    monkeypatch.setattr(h.precision.CpuFeatures, "of_this_machine", classmethod(lambda cls: cls(False, False)))
    reference = _clip(pipe)  # rung 6: the pipeline as the blog leaves it
    changes = h.recipe.apply_beyond_the_blog(pipe, "cpu")
    assert changes == ["prompts in one batch", "DPM-Solver++'s coefficients before the loop",
                       "no host read in the denoising loop", "GPT-2 from a static cache"]
    assert isinstance(pipe.generate_language_model, h.gpt2.StaticGPT2)
    try:
        with h.precision.autocast_for("cpu", pipe.dtype):
            exact = _clip(pipe)
            assert h.recipe.apply_approximations(pipe) == ["deep features reused every 2nd step"]
            approximate = _clip(pipe)
    finally:
        h.recipe.remove_beyond_the_blog(pipe)  # takes rung 8's cache off too
    np.testing.assert_allclose(exact, reference, atol=1e-5)  # rung 7: the same clip
    assert not np.array_equal(approximate, reference) and np.isfinite(approximate).all()  # rung 8: not
    assert "generate_language_model" not in pipe.__dict__  # the pipeline's own again
    np.testing.assert_array_equal(_clip(pipe), reference)
    monkeypatch.setattr(h.precision.CpuFeatures, "of_this_machine", classmethod(lambda cls: cls(True, False)))
    assert isinstance(h.precision.autocast_for("cpu", torch.float32), torch.autocast)
    assert not isinstance(h.precision.autocast_for("cpu", torch.float16), torch.autocast)  # a half pipeline: no
    assert not isinstance(h.precision.autocast_for("cuda", torch.float32), torch.autocast)


def _host_reads(monkeypatch, module_name):
    """Count the tensor values that code of ``module_name`` reads on the host (a GPU would wait at each)."""
    import sys

    reads = []
    for method in ("__float__", "__int__", "__bool__", "item", "tolist"):
        original = getattr(torch.Tensor, method)

        def spy(self, *args, _original=original, _method=method, **kwargs):
            if sys._getframe(1).f_globals.get("__name__") == module_name:
                reads.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, spy)
    return reads


def test_deep_cache_never_reads_the_timestep_and_each_generation_starts_in_full(pipe, monkeypatch):
    reads = _host_reads(monkeypatch, "helpers.deep_cache")
    state = h.deep_cache.apply_deep_cache(pipe.unet, interval=2)
    first, second = _clip(pipe), _clip(pipe)
    assert reads == []  # it counts the UNet's calls instead
    assert state.calls == 0 and state.features is None  # the pipeline reset it at the end of each generation
    np.testing.assert_array_equal(first, second)  # so both generations ran the same steps
    h.deep_cache.remove_deep_cache(pipe.unet)


def test_rung_7s_scheduler_reads_nothing_on_the_host_and_keeps_the_clip(pipe, monkeypatch):
    """DPM-Solver++ finds its first step with ``.nonzero().item()`` (a GPU would make the host wait there, once per
    clip); told to start at the first step, it reads nothing, and takes the same steps."""
    reads = _host_reads(monkeypatch, "diffusers.schedulers.scheduling_dpmsolver_multistep")
    reference = _clip(pipe)
    assert reads == ["item"]  # the pipeline's own: once per clip, at the first step
    reads.clear()
    assert h.recipe.start_at_the_first_step(pipe.scheduler)
    first, second = _clip(pipe), _clip(pipe)
    assert reads == []
    np.testing.assert_array_equal(first, reference)
    np.testing.assert_array_equal(second, reference)  # each call's set_timesteps is told again
    h.recipe.remove_beyond_the_blog(pipe)
    assert "set_timesteps" not in pipe.scheduler.__dict__


def test_pyramid_attention_broadcast_is_reset_between_generations_and_told_the_timestep_without_a_read_per_step(
        pipe, monkeypatch):
    from diffusers.hooks import HookRegistry, PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

    reference = _clip(pipe)
    seen = []
    timestep = h.deep_cache.track_timestep(pipe)
    apply_pyramid_attention_broadcast(pipe.unet, PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2, current_timestep_callback=lambda: seen.append(timestep()) or seen[-1]))
    reads = _host_reads(monkeypatch, "helpers.deep_cache")
    first, second = _clip(pipe), _clip(pipe)
    assert reads == ["tolist", "tolist"]  # the schedule, once per generation
    pipe.scheduler.set_timesteps(STEPS)
    assert sorted(set(seen), reverse=True) == pipe.scheduler.timesteps.tolist()  # the steps' own timesteps
    assert not np.array_equal(first, reference)  # it skipped some attention
    np.testing.assert_array_equal(first, second)  # the second generation started from the same state
    states = [hook.state for module in pipe.unet.modules() if hasattr(module, "_diffusers_hook")
              for hook in module._diffusers_hook.hooks.values() if hasattr(hook, "state")]
    assert states and all(state.iteration == 0 and state.cache is None for state in states)
    registry = HookRegistry.check_if_exists_or_initialize(pipe.unet)
    registry.remove_hook("pyramid_attention_broadcast", recurse=True)
    registry.remove_hook("current_timestep", recurse=False)
    np.testing.assert_array_equal(_clip(pipe), reference)


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])  # rung 7's, and the CUDA-graph row of the bench and 10
def test_rung_7s_decoders_compile_as_one_graph_each_and_keep_the_clip(pipe, monkeypatch, capsys, mode):
    """fullgraph=True with Dynamo alone (a break would raise); Inductor's lowering runs on the GPU."""
    reference = _clip(pipe)
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: real_compile(
        module, backend="eager", fullgraph=kwargs["fullgraph"]))
    torch._dynamo.reset()
    graphs = h.compiling.compiled_graphs()
    try:
        said = h.recipe.compile_the_decoders(pipe, "cuda", mode=mode, support=lambda device: (True, "a test GPU"))
        first, second = _clip(pipe), _clip(pipe)
        assert h.compiling.compiled_graphs() - graphs == 2  # the VAE decoder's and the vocoder's, no recompile
    finally:
        h.recipe.remove_beyond_the_blog(pipe)
        torch._dynamo.reset()
    assert said == ("VAE decoder and vocoder in CUDA graphs" if mode else "VAE decoder and vocoder compiled")
    assert capsys.readouterr().out == ""  # no "compiling failed" line
    np.testing.assert_allclose(first, reference, atol=1e-5)
    np.testing.assert_array_equal(second, first)


def test_rung_7_on_a_gpu_that_cannot_compile_says_why_in_one_line_and_stays_eager(pipe, monkeypatch, capsys):
    monkeypatch.setattr(h.recipe, "compile_support", lambda device: (False, "Triton is not installed"))
    changes = h.recipe.apply_beyond_the_blog(pipe, "cuda")
    assert changes == ["prompts in one batch", "DPM-Solver++'s coefficients before the loop",
                       "no host read in the denoising loop",
                       "VAE decoder and vocoder eager (torch.compile cannot run here)"]
    assert capsys.readouterr().out == "rung 7: the VAE decoder and the vocoder stay eager: Triton is not installed\n"
    assert not isinstance(pipe.vae.decoder, h.compiling.CompiledOrEager)
    h.recipe.remove_beyond_the_blog(pipe)
    assert "encode_prompt" not in pipe.__dict__


def test_rung_7_on_a_gpu_whose_compile_fails_goes_on_eager_with_one_line(pipe, monkeypatch, capsys):
    monkeypatch.setattr(h.recipe, "compile_support", lambda device: (True, "a test GPU"))
    reference = _clip(pipe)

    def inductor(graph, inputs):  # stands in for a backend that fails on this GPU
        raise RuntimeError("no kernels for this GPU")

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: real_compile(module, backend=inductor))
    assert h.recipe.apply_beyond_the_blog(pipe, "cuda")[-1] == "VAE decoder and vocoder compiled"
    torch._dynamo.reset()
    clip = _clip(pipe)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("compiling failed" in line and "going on with the eager model" in line
                                   for line in lines)  # one line for the decoder, one for the vocoder
    assert "no kernels for this GPU" in pipe.vae.decoder.failed
    np.testing.assert_allclose(clip, reference, atol=1e-5)  # eager, and the batched prompts give the same numbers
    h.recipe.remove_beyond_the_blog(pipe)
    assert type(pipe.vae.decoder).__name__ == "Decoder" and type(pipe.vocoder).__name__ == "SpeechT5HifiGan"


def test_tf32_puts_both_flags_back_as_they_were():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    assert cudnn is True  # PyTorch's default: convolutions may use TF32; matrix products may not
    with h.precision.tf32():
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (matmul, cudnn)
    with pytest.raises(ValueError):
        with h.precision.tf32(False):
            assert not torch.backends.cudnn.allow_tf32
            raise ValueError("a failed measurement")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (matmul, cudnn)


@pytest.fixture()
def fake_torchao(tmp_path, monkeypatch):
    """Install a stand-in torchao whose ``torchao.quantization`` is the source given; removed afterwards."""
    import sys

    def install(quantization_source):
        package = tmp_path / "fake_site" / "torchao"
        (package / "quantization").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "quantization" / "__init__.py").write_text(quantization_source)
        info = tmp_path / "fake_site" / "torchao-0.99.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchao\nVersion: 0.99.0\n")
        monkeypatch.syspath_prepend(str(tmp_path / "fake_site"))

    real = {name: module for name, module in sys.modules.items() if name.startswith("torchao")}
    for name in real:
        del sys.modules[name]
    yield install
    for name in [name for name in sys.modules if name.startswith("torchao")]:
        del sys.modules[name]
    sys.modules.update(real)


def test_int8_without_torchao_says_it_is_not_installed(monkeypatch):
    monkeypatch.setattr(h.quantizing.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(h.errors.QuantizationUnavailableError, match="^torchao is not installed") as caught:
        h.quantizing.torchao_int8_weight_only(torch.nn.Linear(4, 4))
    assert "\n" not in str(caught.value)


def test_int8_with_a_torchao_of_another_api_says_so_apart(fake_torchao):
    fake_torchao("def int8_weight_only():\n    pass\n")  # torchao before 0.15, say
    with pytest.raises(h.errors.QuantizationUnavailableError, match="^torchao 0.99.0 is installed but") as caught:
        h.quantizing.torchao_int8_weight_only(torch.nn.Linear(4, 4))
    assert "ImportError" in str(caught.value) and "\n" not in str(caught.value)


def test_int8_with_todays_torchao_quantizes_a_copy_and_leaves_inductor_alone():
    pytest.importorskip("torchao.quantization", reason="torchao is not installed here (pip install torchao)")
    import torch._inductor.config as inductor

    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    before = (inductor.coordinate_descent_tuning, inductor.force_fuse_int_mm_with_mul)
    quantized = h.quantizing.torchao_int8_weight_only(model)
    assert type(model[0].weight) is torch.nn.Parameter  # the original stays float
    assert "Int8" in type(quantized[0].weight).__name__
    x = torch.randn(3, 64)
    torch.testing.assert_close(quantized(x), model(x), atol=0.05, rtol=0.05)
    assert (inductor.coordinate_descent_tuning, inductor.force_fuse_int_mm_with_mul) == before


def test_the_text_encoders_compile_as_one_graph_each_and_keep_the_pipelines_embeddings(pipe):
    """The text side compiled (Dynamo alone here, fullgraph=True: a break would raise), both prompts in one batch:
    the same embeddings as the pipeline's own, and no recompile on the second call."""
    with torch.no_grad():
        embeds, mask, generated = pipe.encode_prompt(h.settings.PROMPT, "cpu", 1, True,
                                                     negative_prompt=h.settings.NEGATIVE_PROMPT)
    graphs = h.compiling.compiled_graphs()
    assert h.prompts.compile_text_encoders(pipe, backend="eager") == ["text_encoder.text_model", "text_encoder_2"]
    try:
        for _ in range(2):
            ours = h.prompts.encode_prompts(pipe, h.settings.PROMPT, h.settings.NEGATIVE_PROMPT)
            torch.testing.assert_close(ours["prompt_embeds"], embeds[1:])
            torch.testing.assert_close(ours["negative_prompt_embeds"], embeds[:1])
            torch.testing.assert_close(ours["generated_prompt_embeds"], generated[1:])
    finally:
        h.prompts.uncompile_text_encoders(pipe)
    assert h.compiling.compiled_graphs() - graphs == 2  # CLAP's text model and T5, once each
    assert type(pipe.text_encoder_2).__name__ == "T5EncoderModel"  # still the pipeline's own module
    torch._dynamo.reset()
