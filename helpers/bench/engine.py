"""The device work of the benchmark: load, configure, compile, time. Everything here takes the device's time.

The schedule (:mod:`helpers.bench.schedule`) and the items (:mod:`helpers.bench.items`) never touch a model
themselves: they ask an :class:`Engine`. So a test can hand the items an engine that only advances a fake clock
by the costs a GPU once measured, and check what the schedule would have measured in that time.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch._dynamo.eval_frame import OptimizedModule

from helpers import compiling, deep_cache, fusing, gpt2, precision, prompts, quantizing, recipe, settings, solver
from helpers.errors import QuantizationUnavailableError
from helpers.flops import peak_flops_per_s, stage_flops
from helpers.generating import generate
from helpers.loading import load_pipeline
from helpers.memory import GIB, peak_memory
from helpers.stages import StageTimes, StepProfile, profile_stages, step_profile, time_stages
from helpers.timing import time_once

SCHEDULERS = ("DDIMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler")


@dataclass(frozen=True)
class Clip:
    """What one generation makes: ``steps`` denoising steps, ``batch`` clips of the blog's prompt, with the
    negative prompt or not, under an autocast dtype or none."""

    steps: int
    batch: int = 1
    negative: bool = True
    autocast: torch.dtype | None = None


@dataclass
class Change:
    """One of notebook 10's techniques: how to apply it to a pipeline and how to undo it."""

    label: str
    apply: Callable[[], object]
    undo: Callable[[], object]


class Engine:
    """The real device work, on ``device``, for clips of ``seconds`` of audio."""

    def __init__(self, model: str, device: torch.device, seconds: float):
        self.model, self.device, self.seconds = model, device, seconds
        self._schedulers: dict[int, object] = {}  # id(pipe) -> the checkpoint's own scheduler (DDIM)

    # ---- pipelines ------------------------------------------------------------------------
    def load(self, dtype: torch.dtype):
        """A pipeline in ``dtype`` on the device, with SDPA attention (diffusers' default)."""
        import_torchao_quietly()
        pipe = load_pipeline(self.model, torch_dtype=dtype, device=self.device)
        self._schedulers[id(pipe)] = pipe.scheduler
        return pipe

    def forget(self, pipe) -> None:
        """Drop what the engine keeps of ``pipe``; its memory goes once the caller drops it too (:meth:`collect`)."""
        self._schedulers.pop(id(pipe), None)

    def collect(self) -> None:
        """Give back the memory of pipelines nobody holds any more (the CUDA cache included)."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def held_gib(self) -> float:
        """Memory held now (GPU: reserved by torch; elsewhere this process's resident memory): what a second
        pipeline's rows subtract, so that their peak is their own."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.memory_reserved(self.device) / GIB
        from helpers.memory import current_rss

        return current_rss() / GIB

    def dtype_name(self, pipe) -> str:
        return str(pipe.unet.dtype).removeprefix("torch.")

    def set_attention(self, pipe, classic: bool) -> None:
        """The classic attention processor (the blog's rungs 1-2), or SDPA (rung 3 on)."""
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        self.eager_unet(pipe).set_attn_processor(AttnProcessor() if classic else AttnProcessor2_0())

    def set_scheduler(self, pipe, name: str) -> None:
        """One of :data:`SCHEDULERS`, from the checkpoint's own scheduler config (DDIM, as it ships)."""
        import diffusers

        original = self._schedulers.setdefault(id(pipe), pipe.scheduler)
        pipe.scheduler = original if type(original).__name__ == name else \
            getattr(diffusers, name).from_config(original.config)

    def scheduler_name(self, pipe) -> str:
        return type(pipe.scheduler).__name__

    # ---- compiling ------------------------------------------------------------------------
    def can_compile(self) -> tuple[bool, str]:
        """The blog's compile, mode="reduce-overhead", replays CUDA graphs: a CUDA feature."""
        if self.device.type != "cuda":
            return False, ("mode='reduce-overhead' replays CUDA graphs, a CUDA feature; notebook 08 skips this rung "
                           "off CUDA too")
        ok, reason = compiling.compile_support(self.device)
        return ok, "" if ok else f"torch.compile cannot run here: {reason}"

    def compile_cache(self) -> dict:
        """The course's compile cache, shared with the notebooks and make_clips (set before the first compile): its
        folder and how many compiled graphs it holds already."""
        from helpers import compile_cache

        folder = compile_cache.use_compile_cache(quiet=True)
        return {"folder": str(folder), "graphs_found": compile_cache.stored_graphs(folder)}

    def cache_lookups(self):
        """Inductor's cache lookups so far (take the difference around a compile: cold or warm)."""
        from helpers import compile_cache

        return compile_cache.lookups()

    def compile_unet(self, pipe) -> None:
        pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)

    def uncompile(self, pipe) -> None:
        """Back to the eager UNet after a failed compile; half-compiled code must not be called again."""
        pipe.unet = self.eager_unet(pipe)
        torch._dynamo.reset()

    def is_compiled(self, pipe) -> bool:
        return isinstance(pipe.unet, OptimizedModule)

    def eager_unet(self, pipe) -> torch.nn.Module:
        return getattr(pipe.unet, "_orig_mod", pipe.unet)

    @contextmanager
    def eager(self, pipe):
        """The pipeline with its eager UNet inside the block (the compiled one is kept, untouched, for after)."""
        compiled = pipe.unet
        pipe.unet = self.eager_unet(pipe)
        try:
            yield pipe
        finally:
            pipe.unet = compiled

    def graphs(self) -> int:
        """Graphs Dynamo compiled so far in this process: unchanged around a call means no recompile."""
        return compiling.compiled_graphs()

    def apply_recipe(self, pipe) -> list[str]:
        return recipe.apply_beyond_the_blog(pipe, self.device)

    def remove_recipe(self, pipe, keep: list | None = None) -> None:
        """Undo the recipe; ``keep``, if given, receives its compiled VAE decoder and vocoder, to reuse."""
        if keep is not None and isinstance(pipe.vae.decoder, compiling.CompiledOrEager):
            keep.append((pipe.vae.decoder, pipe.vocoder))
        recipe.remove_beyond_the_blog(pipe)

    def apply_approximations(self, pipe) -> list[str]:
        """Rung 8's deep-feature cache, on the UNet the pipeline calls (compiled: two graphs)."""
        return recipe.apply_approximations(pipe)  # the step count is the clip's

    def remove_approximations(self, pipe) -> None:
        recipe.remove_approximations(pipe)

    def recipe_autocast(self, pipe) -> torch.dtype | None:
        """Rung 7 on a CPU with bfloat16 instructions runs under bfloat16 autocast (see helpers.recipe)."""
        return torch.bfloat16 if precision.bfloat16_autocast_pays(self.device, pipe.dtype) else None

    # ---- generating and timing --------------------------------------------------------------
    def generate(self, pipe, clip: Clip):
        prompt = settings.PROMPT if clip.batch == 1 else [settings.PROMPT] * clip.batch
        negative = None
        if clip.negative:
            negative = settings.NEGATIVE_PROMPT if clip.batch == 1 else [settings.NEGATIVE_PROMPT] * clip.batch
        autocast = precision.autocast_for(self.device, clip.autocast) if clip.autocast else nullcontext()
        with autocast:
            return generate(pipe, prompt, num_inference_steps=clip.steps, audio_length_in_s=self.seconds,
                            negative_prompt=negative)

    def first_call_s(self, pipe, clip: Clip) -> float:
        return time_once(lambda: self.generate(pipe, clip), self.device)

    def time(self, pipe, clip: Clip, calls: int) -> tuple[list[float], float]:
        """``calls`` generations, each timed on the device's clock; returns their seconds and the peak memory."""
        with peak_memory(self.device) as memory:
            runs = [time_once(lambda: self.generate(pipe, clip), self.device) for _ in range(calls)]
        return runs, memory.peak_gib

    def split(self, pipe, clip: Clip) -> StageTimes:
        return time_stages(pipe, lambda: self.generate(pipe, clip), self.device, steps=clip.steps)

    def profile(self, pipe, clip: Clip) -> StepProfile:
        """One more generation under ``torch.profiler``, read per denoising step (:func:`~helpers.stages.step_profile`).
        """
        return step_profile(profile_stages(pipe, lambda: self.generate(pipe, clip), self.device))

    def flops(self, pipe) -> dict[str, float]:
        """Each stage's operations in a 2-step generation, on the eager modules (a compiled graph's kernels are
        not seen by the counter)."""
        attention = nullcontext()
        if self.device.type == "cpu":  # the counter knows the CUDA attention kernels only: count the math one
            from torch.nn.attention import SDPBackend, sdpa_kernel

            attention = sdpa_kernel(SDPBackend.MATH)
        with eager_modules(pipe), attention:
            return stage_flops(pipe, lambda: self.generate(pipe, Clip(steps=2)))

    def peak_tflops(self, kind: str) -> float | None:
        """A large matrix product's rate in ``kind`` (float16, bfloat16, tf32, float32), or None where the device
        does not compute it natively."""
        dtype = torch.float32 if kind in ("tf32", "float32") else getattr(torch, kind)
        if not precision.computes_natively(self.device, dtype):
            return None
        size, repeats = (8192, 20) if self.device.type == "cuda" else (1024 if settings.smoke_mode() else 2048, 3)
        with precision.tf32(kind == "tf32"):
            return peak_flops_per_s(self.device, dtype, size=size, repeats=repeats, trials=2) / 1e12

    def computes(self, kind: str) -> bool:
        """Does the device compute ``kind`` natively (fast), rather than emulate it?"""
        return precision.computes_natively(self.device, getattr(torch, kind))

    def peak_kinds(self) -> list[str]:
        return ["float16", "bfloat16", "tf32", "float32"] if self.device.type == "cuda" else ["float32", "bfloat16"]

    def why_not(self, kind: str) -> str:
        return precision.why_not(self.device, torch.float32 if kind in ("tf32", "float32") else getattr(torch, kind))

    def half_dtype(self) -> torch.dtype | None:
        """The ladder's half precision here: float16 on a GPU, bfloat16 on a CPU that computes it, else None."""
        return precision.half_precision_for(self.device)

    # ---- notebook 10's changes -------------------------------------------------------------
    def compiled_changes(self, pipe, decoders: list) -> list[Change]:
        """The changes measured against the compiled UNet. ``decoders``: a one-item list that keeps the
        compiled VAE decoder and vocoder between calls (compiled once, by rung 7 or here)."""
        changes = [Change("compiled UNet + both prompts in one batch", *self._batched_prompts(pipe)),
                   Change("compiled UNet + DPM-Solver++'s coefficients before the loop",
                          lambda: (solver.use_precomputed_solver(pipe), recipe.start_at_the_first_step(pipe.scheduler)),
                          lambda: (pipe.scheduler.__dict__.pop("set_timesteps", None),
                                   solver.remove_precomputed_solver(pipe)))]
        ok, _ = compiling.compile_support(self.device)
        if ok and self.device.type == "cuda":
            eager = (pipe.vae.decoder, pipe.vocoder)

            def compiled_decoders(kept: list, mode: str | None) -> Change:
                """Compiled once (the pipeline's decoders are eager here: each change is undone before the next),
                and kept between the pairs of runs."""
                def apply():
                    if not kept:
                        recipe.compile_the_decoders(pipe, self.device, mode=mode)
                        kept.append((pipe.vae.decoder, pipe.vocoder))
                    pipe.vae.decoder, pipe.vocoder = kept[0]

                def undo():
                    pipe.vae.decoder, pipe.vocoder = eager
                how = "in CUDA graphs, outputs copied" if mode == "reduce-overhead" else "compiled"
                return Change(f"compiled UNet + VAE decoder and vocoder {how}", apply, undo)

            changes.append(compiled_decoders(decoders, None))  # shared with rung 7's
            changes.append(compiled_decoders([], "reduce-overhead"))
            changes.append(self._static_gpt2(pipe, "compiled UNet + GPT-2 from a static cache, one CUDA graph",
                                             compile="reduce-overhead"))
            batch, unbatch = self._batched_prompts(pipe)
            changes.append(Change("compiled UNet + both prompts in one batch, text encoders compiled",
                                  lambda: (batch(), prompts.compile_text_encoders(pipe)),
                                  lambda: (prompts.uncompile_text_encoders(pipe), unbatch())))
        return changes

    def _static_gpt2(self, pipe, label: str, compile: str | None = None) -> Change:
        """GPT-2's eight vectors from a static cache (helpers.gpt2), made once and reused by every pair of runs."""
        made: list[gpt2.StaticGPT2] = []

        def apply():
            if not made:
                made.append(gpt2.StaticGPT2(pipe.language_model, compile=compile))
            pipe.generate_language_model = made[0]
        return Change(label, apply, lambda: gpt2.remove_static_gpt2(pipe))

    def eager_changes(self, pipe) -> list[Change]:
        """The changes measured against the eager UNet, each undone after (the pipeline's UNet must be eager)."""
        unet = pipe.unet

        def channels_last(memory_format):
            unet.to(memory_format=memory_format)
            pipe.vae.to(memory_format=memory_format)

        changes = [
            Change("eager + channels_last UNet and VAE", lambda: channels_last(torch.channels_last),
                   lambda: channels_last(torch.contiguous_format)),
            Change("eager + QKV projections fused", lambda: fusing.fuse_qkv(unet), lambda: fusing.unfuse_qkv(unet)),
            Change("eager + both prompts in one batch", *self._batched_prompts(pipe)),
            self._static_gpt2(pipe, "eager + GPT-2 from a static cache"),
            Change("eager + deep features reused every 2nd step (changes the audio)",
                   lambda: deep_cache.apply_deep_cache(unet, interval=2), lambda: deep_cache.remove_deep_cache(unet)),
            Change("eager + Pyramid Attention Broadcast (changes the audio)", *self._pyramid_attention_broadcast(pipe)),
        ]
        int8 = self._int8(pipe)
        if int8 is not None:
            changes.append(int8)
        return changes

    def _batched_prompts(self, pipe):
        return (lambda: prompts.batch_prompt_encoding(pipe)), (lambda: pipe.__dict__.pop("encode_prompt", None))

    def _pyramid_attention_broadcast(self, pipe):
        from diffusers.hooks import HookRegistry, PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

        unet = pipe.unet

        def apply():
            timestep = deep_cache.track_timestep(pipe)  # counted, not read from the GPU each step
            apply_pyramid_attention_broadcast(unet, PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=2, current_timestep_callback=timestep))

        def undo():
            registry = HookRegistry.check_if_exists_or_initialize(unet)
            registry.remove_hook("pyramid_attention_broadcast", recurse=True)
            registry.remove_hook("current_timestep", recurse=False)
        return apply, undo

    def _int8(self, pipe) -> Change | None:
        """int8 weights: PyTorch's dynamic int8 on a float32 CPU UNet, torchao's weight-only on a GPU. torchao is
        imported here only, and its import messages kept out of what the run prints."""
        unet = pipe.unet
        if self.device.type == "cpu":
            if unet.dtype != torch.float32:
                return None
            make, label = quantizing.dynamic_int8, "eager + UNet linear layers in dynamic int8"
        else:
            make, label = quantizing.torchao_int8_weight_only, "eager + UNet int8 weight-only (torchao)"
        try:
            with quiet_imports():
                quantized = make(unet)
        except QuantizationUnavailableError as error:
            print(f"int8: {error}", flush=True)
            return None
        return Change(label, lambda: setattr(pipe, "unet", quantized), lambda: setattr(pipe, "unet", unet))

    def tf32(self):
        return precision.tf32()


@contextmanager
def quiet_imports():
    """Keep a library's import-time messages (torchao's SyntaxWarning, its "Unable to import" line on stdout and
    its logging) out of the run's output."""
    import contextlib
    import io
    import logging
    import warnings

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


@contextmanager
def eager_modules(pipe):
    """The pipeline with its compiled modules swapped for their eager selves inside the block."""
    swapped = []
    for owner, name in ((pipe, "unet"), (pipe.vae, "decoder"), (pipe, "vocoder")):
        module = getattr(owner, name)
        eager = module.eager if isinstance(module, compiling.CompiledOrEager) else getattr(module, "_orig_mod", module)
        if eager is not module:
            setattr(owner, name, eager)
            swapped.append((owner, name, module))
    try:
        yield pipe
    finally:
        for owner, name, module in swapped:
            setattr(owner, name, module)


def import_torchao_quietly() -> None:
    """diffusers' loader imports torchao when it is installed, and torchao's import prints a SyntaxWarning and an
    "Unable to import ... Tensor objects" line. Imported once here, quietly, those lines stay out of the run."""
    import importlib.util
    import sys

    if "torchao" not in sys.modules and importlib.util.find_spec("torchao") is not None:
        with quiet_imports():
            try:
                import torchao  # noqa: F401 (imported for its side effect: its messages, captured)
            except Exception:  # a torchao that does not import with this torch: int8 says so when measured
                pass
