"""Notebook 10's best recipe, as two calls: rungs 7 and 8 of notebook 08's ladder, "beyond the blog".

Each change is taught and measured on its own in notebook 10; this module only puts together the ones that paid
there, for each kind of device, on top of the ladder's last rung (SDPA, DPM-Solver++, the negative prompt;
float16 and a compiled UNet on a CUDA GPU). They come in two kinds, kept apart:

* rung 7, :func:`apply_beyond_the_blog`: the same arithmetic, done faster. Its clip is rung 6's, within the
  rounding of the precision (a test holds each piece to that);
* rung 8, :func:`apply_approximations`: work skipped, so the audio changes: the UNet's deep features reused every
  other step (DeepCache), at :data:`RUNG_8_STEPS` DPM-Solver++ steps instead of 20. Listen before you keep it.
"""

from __future__ import annotations

import torch
from torch._dynamo.eval_frame import OptimizedModule

from helpers.compiling import CompiledOrEager, compile_support
from helpers.deep_cache import apply_deep_cache, remove_deep_cache
from helpers.gpt2 import remove_static_gpt2, use_static_gpt2
from helpers.precision import bfloat16_autocast_pays
from helpers.prompts import batch_prompt_encoding
from helpers.solver import remove_precomputed_solver, use_precomputed_solver

RUNG_8_STEPS = 10  # DPM-Solver++ steps of rung 8 (the blog's last rung: 20)


def apply_beyond_the_blog(pipe, device: torch.device | str, *, compile_decoders: bool = True,
                          autocast: bool = True) -> list[str]:
    """Apply the recipe's changes to ``pipe`` (already at the last rung); returns what it changed, in words.

    Rung 7: only changes that keep rung 6's audio. Everywhere: the prompts encoded in one batch, DPM-Solver++'s
    coefficients worked out before the loop (:mod:`helpers.solver`), and the scheduler told that the loop starts at
    its first step (:func:`start_at_the_first_step`). On a CUDA GPU: the VAE decoder
    and the vocoder compiled too (:func:`compile_the_decoders`; ``compile_decoders=False`` leaves that to the
    caller). Elsewhere: GPT-2's vectors from a static cache (the same numbers, :mod:`helpers.gpt2`), and, with
    ``autocast``, the line that says to wrap the generation in ``h.precision.autocast_for(device, pipe.dtype)`` for
    the CPU's bfloat16 (``autocast=False``: the caller keeps the pipeline's precision, as ``make_clips --dtype``).
    :func:`remove_beyond_the_blog` undoes it.
    """
    device = torch.device(device)
    batch_prompt_encoding(pipe)
    changes = ["prompts in one batch"]
    if use_precomputed_solver(pipe):
        changes.append("DPM-Solver++'s coefficients before the loop")
    if start_at_the_first_step(pipe.scheduler):
        changes.append("no host read in the denoising loop")
    if device.type == "cuda":
        if compile_decoders:
            changes.append(compile_the_decoders(pipe, device))
    else:
        use_static_gpt2(pipe)  # measured on a CPU (notebook 10); on a GPU the benchmark measures it first
        changes.append("GPT-2 from a static cache")
        if autocast and bfloat16_autocast_pays(device, pipe.dtype):
            changes.append("bfloat16 autocast")
    return changes


def compile_the_decoders(pipe, device: torch.device | str, *, mode: str | None = None, support=None) -> str:
    """Compile the VAE decoder and the vocoder where ``torch.compile`` can run on ``device``; returns what it did.

    ``fullgraph=True``, in ``mode`` (default: Inductor's kernels alone; the benchmark measures ``"reduce-overhead"``,
    CUDA graphs, apart, before it can join the recipe, its outputs copied before the next replay). Each compiles at
    its first call and goes on eager, with one line, if its compile fails there
    (:class:`~helpers.compiling.CompiledOrEager`); where compiling cannot run at all (``support``:
    :func:`~helpers.compiling.compile_support`) both stay eager, and one line says why.
    """
    ok, reason = (support or compile_support)(torch.device(device))
    if not ok:
        print(f"rung 7: the VAE decoder and the vocoder stay eager: {reason}")
        return "VAE decoder and vocoder eager (torch.compile cannot run here)"
    if not isinstance(pipe.vae.decoder, (CompiledOrEager, OptimizedModule)):
        pipe.vae.decoder = CompiledOrEager(pipe.vae.decoder, "Compiling the VAE decoder", fullgraph=True, mode=mode)
        pipe.vocoder = CompiledOrEager(pipe.vocoder, "Compiling the vocoder", fullgraph=True, mode=mode)
    return "VAE decoder and vocoder " + ("in CUDA graphs" if mode == "reduce-overhead" else "compiled")


def remove_beyond_the_blog(pipe) -> None:
    """Undo :func:`apply_beyond_the_blog` (and :func:`apply_approximations`): the pipeline's own prompt encoding and
    DPM-Solver++, no deep cache, an eager VAE decoder and vocoder (as they were before the recipe compiled them)."""
    pipe.__dict__.pop("encode_prompt", None)  # batch_prompt_encoding set it on this pipeline only
    pipe.scheduler.__dict__.pop("set_timesteps", None)  # start_at_the_first_step set it on this scheduler only
    remove_precomputed_solver(pipe)
    remove_static_gpt2(pipe)
    remove_approximations(pipe)
    if isinstance(pipe.vae.decoder, CompiledOrEager):
        pipe.vae.decoder = pipe.vae.decoder.eager
    if isinstance(pipe.vocoder, CompiledOrEager):
        pipe.vocoder = pipe.vocoder.eager


def start_at_the_first_step(scheduler) -> bool:
    """Tell ``scheduler``, at every ``set_timesteps``, that the loop starts at the first step; True if it can be told.

    Without it, a multistep scheduler's first ``step`` finds its place with ``(timesteps == t).nonzero().item()``:
    reading a GPU tensor on the host, so the host waits there for every kernel queued before it (the text side's),
    once per clip, and the loop's launches cannot run ahead. The pipeline always starts at index 0, so
    ``set_begin_index(0)`` gives the same steps with no read. The pipeline calls ``set_timesteps`` at every call,
    which forgets the index: this wraps it, on this scheduler only (a new scheduler starts clean).
    """
    if "set_timesteps" in scheduler.__dict__:
        return True  # told already
    if not hasattr(scheduler, "set_begin_index"):
        return False  # a scheduler without an index to find (DDIM): nothing to tell
    own = scheduler.set_timesteps

    def set_timesteps(*args, **kwargs):
        own(*args, **kwargs)
        scheduler.set_begin_index(0)

    scheduler.set_timesteps = set_timesteps
    return True


def apply_approximations(pipe) -> list[str]:
    """Rung 8, on top of rung 7: the UNet's deep features reused every other step (:mod:`helpers.deep_cache`).

    It changes the audio, as does running :data:`RUNG_8_STEPS` steps instead of 20 (the step count is the call's
    ``num_inference_steps``: the caller passes it, and names it). On a compiled UNet the cache keeps two graphs, a
    full step and a shallow one. :func:`remove_approximations` undoes it.
    """
    apply_deep_cache(pipe.unet, interval=2)
    return ["deep features reused every 2nd step"]


def remove_approximations(pipe) -> None:
    """Undo :func:`apply_approximations`: every step runs the whole UNet again."""
    remove_deep_cache(pipe.unet)
