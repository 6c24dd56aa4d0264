"""Notebook 10's best recipe, as one call: rung 7 of notebook 08's ladder, "beyond the blog".

Each change is taught and measured on its own in notebook 10; this module only puts together the ones that paid
there, for each kind of device, on top of the ladder's last rung (SDPA, DPM-Solver++, the negative prompt;
float16 and a compiled UNet on a CUDA GPU).
"""

from __future__ import annotations

import contextlib

import torch

from helpers.deep_cache import apply_deep_cache
from helpers.prompts import batch_prompt_encoding


def cpu_has_fast_bfloat16() -> bool:
    """True when this CPU has bfloat16 instructions (AVX512-BF16 or AMX) that oneDNN uses.

    Without them a CPU emulates bfloat16, and it is slower than float32.
    """
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_for(device: torch.device | str):
    """bfloat16 autocast on a CPU that computes it fast; nothing anywhere else (a GPU already runs float16)."""
    if torch.device(device).type == "cpu" and cpu_has_fast_bfloat16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def apply_beyond_the_blog(pipe, device: torch.device | str) -> list[str]:
    """Apply the recipe's changes to ``pipe`` (already at the last rung); returns what it changed, in words.

    Everywhere: both prompts encoded in one batch. On a CUDA GPU: the VAE decoder and the vocoder compiled too
    (default mode: with CUDA graphs they fail). Elsewhere: the UNet's deep features reused every other step.
    Wrap the generation in :func:`autocast_for` for the CPU's bfloat16.
    """
    device = torch.device(device)
    batch_prompt_encoding(pipe)
    changes = ["prompts in one batch"]
    if device.type == "cuda":
        pipe.vae.decoder = torch.compile(pipe.vae.decoder, fullgraph=True)
        pipe.vocoder = torch.compile(pipe.vocoder, fullgraph=True)
        changes.append("VAE decoder and vocoder compiled")
    else:
        apply_deep_cache(pipe.unet, interval=2)
        changes.append("deep features reused every 2nd step")
        if device.type == "cpu" and cpu_has_fast_bfloat16():
            changes.append("bfloat16 autocast")
    return changes
