"""Notebook 10's best recipe, as one call: rung 7 of notebook 08's ladder, "beyond the blog".

Each change is taught and measured on its own in notebook 10; this module only puts together the ones that paid
there, for each kind of device, on top of the ladder's last rung (SDPA, DPM-Solver++, the negative prompt;
float16 and a compiled UNet on a CUDA GPU).
"""

from __future__ import annotations

import torch
from torch._dynamo.eval_frame import OptimizedModule

from helpers.compiling import CompiledOrEager, compile_support
from helpers.deep_cache import apply_deep_cache, remove_deep_cache
from helpers.gpt2 import remove_static_gpt2, use_static_gpt2
from helpers.precision import bfloat16_autocast_pays
from helpers.prompts import batch_prompt_encoding


def apply_beyond_the_blog(pipe, device: torch.device | str) -> list[str]:
    """Apply the recipe's changes to ``pipe`` (already at the last rung); returns what it changed, in words.

    Everywhere: both prompts encoded in one batch. On a CUDA GPU where ``torch.compile`` can run
    (:func:`~helpers.compiling.compile_support`): the VAE decoder and the vocoder compiled too (default mode: with
    CUDA graphs they fail), each going on eager, with one line, if its compile fails at the first call. Elsewhere:
    GPT-2's vectors from a static cache (the same numbers, :mod:`helpers.gpt2`) and the UNet's deep features reused
    every other step. Wrap the generation in
    ``h.precision.autocast_for(device, pipe.dtype)`` for the CPU's bfloat16. :func:`remove_beyond_the_blog` undoes it.
    """
    device = torch.device(device)
    batch_prompt_encoding(pipe)
    changes = ["prompts in one batch"]
    if device.type == "cuda":
        ok, reason = compile_support(device)
        if not ok:
            print(f"rung 7: the VAE decoder and the vocoder stay eager: {reason}")
            changes.append("VAE decoder and vocoder eager (torch.compile cannot run here)")
        else:
            if not isinstance(pipe.vae.decoder, (CompiledOrEager, OptimizedModule)):
                pipe.vae.decoder = CompiledOrEager(pipe.vae.decoder, "Compiling the VAE decoder", fullgraph=True)
                pipe.vocoder = CompiledOrEager(pipe.vocoder, "Compiling the vocoder", fullgraph=True)
            changes.append("VAE decoder and vocoder compiled")
    else:
        use_static_gpt2(pipe)  # measured on a CPU (notebook 10); on a GPU the benchmark measures it first
        changes.append("GPT-2 from a static cache")
        apply_deep_cache(getattr(pipe.unet, "_orig_mod", pipe.unet), interval=2)
        changes.append("deep features reused every 2nd step")
        if bfloat16_autocast_pays(device, pipe.dtype):
            changes.append("bfloat16 autocast")
    return changes


def remove_beyond_the_blog(pipe) -> None:
    """Undo :func:`apply_beyond_the_blog`: the pipeline's own prompt encoding, no deep cache, an eager VAE decoder
    and vocoder (as they were before the recipe compiled them)."""
    pipe.__dict__.pop("encode_prompt", None)  # batch_prompt_encoding set it on this pipeline only
    remove_static_gpt2(pipe)
    remove_deep_cache(getattr(pipe.unet, "_orig_mod", pipe.unet))
    if isinstance(pipe.vae.decoder, CompiledOrEager):
        pipe.vae.decoder = pipe.vae.decoder.eager
    if isinstance(pipe.vocoder, CompiledOrEager):
        pipe.vocoder = pipe.vocoder.eager
