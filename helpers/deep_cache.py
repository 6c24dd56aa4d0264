"""Reusing the UNet's work across denoising steps: the DeepCache idea, small, and the clock caches need (notebook 10).

Between two denoising steps the UNet's deep, low-resolution features change little; its shallow,
full-resolution ones carry the detail. DeepCache (Ma et al., 2023) runs the whole UNet on one step and keeps the
features that leave the deep part (the output of the second-to-last up block); on the next step it runs only
the outermost down block and up block, and takes the deep part from the cache. Every other step then costs
the shallow part only.

The blocks are switched with diffusers' own model hooks (``diffusers.hooks``, what its Pyramid Attention
Broadcast and FasterCache use): a hook may replace a module's forward, so a skipped block returns at once.

Two rules for any cache across steps, both kept here without ever reading a GPU tensor on the host (``int(t)``
on a CUDA timestep makes the CPU wait for the GPU at every step):

* it must start each generation empty. diffusers' pipelines end every call with ``maybe_free_model_hooks()``,
  which resets the *stateful* hooks of each model that has ``_reset_stateful_cache`` (its ``CacheMixin`` models);
  this UNet predates that mixin, so :func:`reset_after_each_generation` gives it that method;
* where it needs the current timestep, it counts the UNet's calls and reads the whole schedule from the scheduler
  once per generation (:func:`track_timestep`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from diffusers.hooks import HookRegistry, ModelHook


@dataclass
class DeepCacheState:
    """What the hooks share: where this generation is, and the features kept from its last full step."""

    interval: int  # one full step in every `interval` steps
    calls: int = 0  # UNet calls since this generation began
    reuse: bool = False  # this call: take the deep part from `features`
    features: object = field(default=None, repr=False)  # the second-to-last up block's output at the last full step
    full_steps: int = 0  # over every generation so far
    cached_steps: int = 0


class DeepCacheStep(ModelHook):
    """On the UNet: before each call, decide whether this step runs in full or reuses the cache.

    It counts calls instead of reading the timestep, and it is stateful: the pipeline resets it when a generation
    ends (:func:`reset_after_each_generation`), so the next one starts with a full step. The decision runs as a
    PyTorch pre-hook on the module the pipeline calls, outside any compiled graph: a compiled UNet then sees only
    ``state.reuse``, True or False, and keeps two graphs (a full step, a shallow one) instead of one per count. A
    forward hook there, outside the graph too, keeps a copy of the features a full step leaves (:meth:`keep_a_copy`).
    """

    _is_stateful = True

    def __init__(self, state: DeepCacheState):
        super().__init__()
        self.state, self.handles = state, []

    def decide(self, module, args) -> None:
        state = self.state
        state.reuse = state.features is not None and state.calls % state.interval != 0
        state.calls += 1
        state.cached_steps += state.reuse
        state.full_steps += not state.reuse

    def keep_a_copy(self, module, args, output) -> None:
        """After a full step, outside any graph: own the kept features. A UNet in CUDA graphs returns them in the
        graph's memory, which its next replay reuses; the shallow step reads them after that."""
        if not self.state.reuse and self.state.features is not None:
            self.state.features = self.state.features.clone()

    def reset_state(self, module):
        self.state.calls, self.state.reuse, self.state.features = 0, False, None
        return module


class SkipWhenReusing(ModelHook):
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


class KeepFeatures(ModelHook):
    """On the second-to-last up block: remember its output at every full step."""

    def __init__(self, state: DeepCacheState):
        super().__init__()
        self.state = state

    def post_forward(self, module, output):
        if not self.state.reuse:
            self.state.features = output
        return output


def reset_after_each_generation(unet: torch.nn.Module) -> None:
    """Have the pipeline reset the UNet's stateful hooks (DeepCache's, Pyramid Attention Broadcast's, ...) at the
    end of every call, as it does for diffusers' own cache-ready models.

    A generation stopped halfway (an error, Ctrl-C) never reaches that line: then call
    ``unet._reset_stateful_cache()`` yourself before the next one.
    """
    unet._reset_stateful_cache = HookRegistry.check_if_exists_or_initialize(unet).reset_stateful_hooks


def apply_deep_cache(unet: torch.nn.Module, interval: int = 2) -> DeepCacheState:
    """Run the UNet in full once every ``interval`` steps and reuse its deep features in between.

    ``unet`` is the module the pipeline calls, ``pipe.unet``, compiled or not. Returns the state (``full_steps``,
    ``cached_steps`` count what happened). :func:`remove_deep_cache` undoes it. ``interval=1`` runs every step in
    full: the same output as without the cache.
    """
    if interval < 1:
        raise ValueError(f"interval must be 1 or more (one full step every `interval` steps), not {interval}.")
    state = DeepCacheState(interval=interval)
    step = DeepCacheStep(state)
    step.handles = [unet.register_forward_pre_hook(step.decide),  # on a compiled UNet: outside its graph
                    unet.register_forward_hook(step.keep_a_copy)]
    unet = getattr(unet, "_orig_mod", unet)  # the blocks' hooks go inside the graph
    HookRegistry.check_if_exists_or_initialize(unet).register_hook(step, "deep_cache")
    deep = [(block, "down") for block in unet.down_blocks[1:]] + [(unet.mid_block, "mid")]
    deep += [(block, "up") for block in unet.up_blocks[:-2]] + [(unet.up_blocks[-2], "keep")]
    for block, kind in deep:
        registry = HookRegistry.check_if_exists_or_initialize(block)
        registry.register_hook(SkipWhenReusing(state, kind), "deep_cache")
        if kind == "keep":
            registry.register_hook(KeepFeatures(state), "deep_cache_keep")
    reset_after_each_generation(unet)
    return state


def remove_deep_cache(unet: torch.nn.Module) -> None:
    """Take every hook :func:`apply_deep_cache` added off the UNet (``pipe.unet``, compiled or not) and its blocks."""
    unet = getattr(unet, "_orig_mod", unet)
    step = getattr(unet, "_diffusers_hook", None) and unet._diffusers_hook.get_hook("deep_cache")
    if step is not None:
        for handle in step.handles:
            handle.remove()
    for module in [unet, *unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            for name in ("deep_cache", "deep_cache_keep"):
                registry.remove_hook(name, recurse=False)


class CurrentTimestep(ModelHook):
    """On the UNet: counts its calls, so that :meth:`now` can say the timestep of the step it is running, as a
    Python number, without reading the GPU at each step.

    The first question in a generation reads the scheduler's whole schedule once (``timesteps.tolist()``); the count
    goes up when a call ends, so a cache asking before, during or after the UNet's forward gets the same answer.
    Stateful: the pipeline starts the count again after every generation.
    """

    _is_stateful = True

    def __init__(self, scheduler_of: Callable[[], object]):
        super().__init__()
        self.scheduler_of = scheduler_of  # the pipeline's scheduler now: a notebook may swap it between calls
        self.calls, self.schedule = 0, None

    def post_forward(self, module, output):
        self.calls += 1
        return output

    def now(self) -> float:
        if self.schedule is None:  # the first question of this generation
            self.schedule = self.scheduler_of().timesteps.tolist()
        return self.schedule[min(self.calls, len(self.schedule) - 1)]

    def reset_state(self, module):
        self.calls, self.schedule = 0, None
        return module


def track_timestep(pipe) -> Callable[[], float]:
    """A function that returns the current timestep of ``pipe``'s generation: the ``current_timestep_callback``
    that diffusers' Pyramid Attention Broadcast and FasterCache ask for."""
    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)  # the UNet's own module, compiled or not
    hook = CurrentTimestep(lambda: pipe.scheduler)
    registry = HookRegistry.check_if_exists_or_initialize(unet)
    registry.remove_hook("current_timestep", recurse=False)  # one clock per UNet: a second call replaces the first
    registry.register_hook(hook, "current_timestep")
    reset_after_each_generation(unet)
    return hook.now
