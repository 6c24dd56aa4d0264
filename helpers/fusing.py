"""QKV fusion that really fuses on AudioLDM 2's UNet (notebook 10).

Attention starts with three matrix products on the same input: queries, keys and values. Fused, they are one
larger product, one kernel launch instead of three, which helps a GPU that waits on launches. diffusers has
``unet.fuse_qkv_projections()``, but it only fuses the newer attention classes, and this UNet's 96 attention
modules are the older ``Attention`` class: the call returns without fusing any (notebook 10 shows it). Each
module still has ``fuse_projections()``, and ``FusedAttnProcessor2_0`` uses what it builds.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, FusedAttnProcessor2_0


def fused_modules(model: torch.nn.Module) -> int:
    """How many attention modules of ``model`` carry fused projections."""
    return sum(bool(getattr(module, "fused_projections", False)) for module in model.modules())


def fuse_qkv(unet: torch.nn.Module) -> int:
    """Fuse every attention module's projections (self-attention: q, k, v; cross-attention: k, v).

    Returns how many modules were fused. The weights are copied into one ``nn.Linear`` per module, so the
    output does not change beyond rounding; the unfused layers stay, and :func:`unfuse_qkv` goes back.
    """
    modules = [module for module in unet.modules() if isinstance(module, Attention)]
    for module in modules:
        module.fuse_projections()
    unet.set_attn_processor(FusedAttnProcessor2_0())
    return len(modules)


def unfuse_qkv(unet: torch.nn.Module) -> None:
    """Back to three projections per module and the plain SDPA processor."""
    for module in unet.modules():
        if isinstance(module, Attention) and getattr(module, "fused_projections", False):
            for name in ("to_qkv", "to_kv"):
                if hasattr(module, name):
                    delattr(module, name)
            module.fused_projections = False
    unet.set_attn_processor(AttnProcessor2_0())
