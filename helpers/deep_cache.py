"""Reusing the UNet's deep features on alternate steps: the DeepCache idea, small (notebook 10).

Between two denoising steps the UNet's deep, low-resolution features change little; its shallow,
full-resolution ones carry the detail. DeepCache (Ma et al., 2023) runs the whole UNet on one step and keeps the
features that leave the deep part (the output of the second-to-last up block); on the next step it runs only
the outermost down block and up block, and takes the deep part from the cache. Every other step then costs
the shallow part only.

The blocks are switched with diffusers' own model hooks (``diffusers.hooks``, what its Pyramid Attention
Broadcast and FasterCache use): a hook may replace a module's forward, so a skipped block returns at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.hooks import HookRegistry, ModelHook

HOOK_NAME = "course_deep_cache"


@dataclass
class DeepCacheState:
    interval: int  # one full step in every `interval` steps
    calls: int = 0  # UNet calls since the generation began
    last_timestep: float | None = None
    features: object = field(default=None, repr=False)  # the second-to-last up block's output at the last full step
    reuse: bool = False  # this call: take the deep part from `features`
    full_steps: int = 0
    cached_steps: int = 0


class _StepCounter(ModelHook):
    """On the UNet: decides, before each call, whether this step runs in full or reuses the cache."""

    def __init__(self, state: DeepCacheState):
        super().__init__()
        self.state = state

    def pre_forward(self, module, *args, **kwargs):
        state = self.state
        timestep = float(torch.as_tensor(kwargs.get("timestep", args[1] if len(args) > 1 else 0)).flatten()[0])
        if state.last_timestep is None or timestep >= state.last_timestep:  # timesteps fall: a new generation
            state.calls, state.features = 0, None
        state.last_timestep = timestep
        state.reuse = state.features is not None and state.calls % state.interval != 0
        state.calls += 1
        state.cached_steps += state.reuse
        state.full_steps += not state.reuse
        return args, kwargs


class _SkipWhenReusing(ModelHook):
    """On a deep block: when the step reuses the cache, return at once with outputs of the right form."""

    def __init__(self, state: DeepCacheState, kind: str):
        super().__init__()
        self.state, self.kind = state, kind

    def new_forward(self, module, *args, **kwargs):
        if not self.state.reuse:
            return self.fn_ref.original_forward(*args, **kwargs)
        hidden_states = kwargs.get("hidden_states", args[0] if args else None)
        if self.kind == "keep":  # the second-to-last up block: its cached output
            return self.state.features
        if self.kind == "down":  # (hidden_states, one skip tensor per resnet and downsampler): never read
            skips = len(module.resnets) + len(getattr(module, "downsamplers", None) or [])
            return hidden_states, (hidden_states,) * skips
        return hidden_states  # mid block and deeper up blocks: their output is replaced by the cache anyway


class _KeepFeatures(ModelHook):
    """On the second-to-last up block: remember its output at every full step."""

    def __init__(self, state: DeepCacheState):
        super().__init__()
        self.state = state

    def post_forward(self, module, output):
        if not self.state.reuse:
            self.state.features = output
        return output


def apply_deep_cache(unet: torch.nn.Module, interval: int = 2) -> DeepCacheState:
    """Run the UNet in full once every ``interval`` steps and reuse its deep features in between.

    Returns the state (``full_steps``, ``cached_steps`` count what happened). :func:`remove_deep_cache` undoes it.
    ``interval=1`` runs every step in full: the same output as without the cache.
    """
    if interval < 1:
        raise ValueError(f"interval must be 1 or more (one full step every `interval` steps), not {interval}.")
    state = DeepCacheState(interval=interval)
    HookRegistry.check_if_exists_or_initialize(unet).register_hook(_StepCounter(state), HOOK_NAME)
    deep = [(block, "down") for block in unet.down_blocks[1:]] + [(unet.mid_block, "mid")]
    deep += [(block, "up") for block in unet.up_blocks[:-2]] + [(unet.up_blocks[-2], "keep")]
    for block, kind in deep:
        registry = HookRegistry.check_if_exists_or_initialize(block)
        registry.register_hook(_SkipWhenReusing(state, kind), HOOK_NAME)
        if kind == "keep":
            registry.register_hook(_KeepFeatures(state), HOOK_NAME + "_keep")
    return state


def remove_deep_cache(unet: torch.nn.Module) -> None:
    """Take every hook :func:`apply_deep_cache` added off the UNet and its blocks."""
    for module in [unet, *unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            for name in (HOOK_NAME, HOOK_NAME + "_keep"):
                registry.remove_hook(name, recurse=False)
