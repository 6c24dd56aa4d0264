"""Notebook 10's best recipe, as one call: rung 7 of notebook 08's ladder, "beyond the blog".

Each change is taught and measured on its own in notebook 10; this module only puts together the ones that paid
there, for each kind of device, on top of the ladder's last rung (SDPA, DPM-Solver++, the negative prompt;
float16 and a compiled UNet on a CUDA GPU).
"""

from __future__ import annotations

import torch

from helpers.deep_cache import apply_deep_cache
from helpers.precision import bfloat16_autocast_pays
from helpers.prompts import batch_prompt_encoding


def apply_beyond_the_blog(pipe, device: torch.device | str) -> list[str]:
    """Apply the recipe's changes to ``pipe`` (already at the last rung); returns what it changed, in words.

    Everywhere: both prompts encoded in one batch. On a CUDA GPU: the VAE decoder and the vocoder compiled too
    (default mode: with CUDA graphs they fail). Elsewhere: the UNet's deep features reused every other step.
    Wrap the generation in ``h.precision.autocast_for(device, pipe.dtype)`` for the CPU's bfloat16.
    """
    device = torch.device(device)
    batch_prompt_encoding(pipe)
    changes = ["prompts in one batch"]
    if device.type == "cuda":
        if not hasattr(pipe.vae.decoder, "_orig_mod"):  # not compiled yet (notebook 10 may have done it)
            pipe.vae.decoder = torch.compile(pipe.vae.decoder, fullgraph=True)
            pipe.vocoder = torch.compile(pipe.vocoder, fullgraph=True)
        changes.append("VAE decoder and vocoder compiled")
    else:
        apply_deep_cache(pipe.unet, interval=2)
        changes.append("deep features reused every 2nd step")
        if bfloat16_autocast_pays(device, pipe.dtype):
            changes.append("bfloat16 autocast")
    return changes
