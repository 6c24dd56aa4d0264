"""GPT-2's eight new vectors in one graph: a static key/value cache, no language-model head, no growing shapes.

Once per clip, AudioLDM 2's ``generate_language_model`` asks GPT-2 for 8 new hidden states, one forward call each.
As the pipeline does it, every call goes through ``GPT2LMHeadModel``, which also computes 50 257-way logits the
pipeline throws away; the key/value cache grows by concatenation, so each call has new shapes; and transformers'
generation helpers update the attention mask between calls. On a fast GPU that is tens of milliseconds of the host
launching small kernels, more than the 20 compiled UNet steps take.

:class:`StaticGPT2` does the same arithmetic with fixed shapes: ``GPT2Model`` alone (the hidden states are all the
pipeline keeps), a ``transformers.StaticCache`` allocated once at the final length, the attention mask written once
at that length, and the positions the pipeline uses (0, 1, 2, ... whatever the mask says). Every call of a prompt of
one length then has the same shapes, so the whole loop traces as one graph: ``torch.compile(fullgraph=True)``, and on
a CUDA GPU ``mode="reduce-overhead"`` replays it as one CUDA graph. The result equals the pipeline's own
(tests/test_gpt2.py, on the tiny and the full-size random checkpoints).
"""

from __future__ import annotations

from typing import Callable

import torch
from transformers import StaticCache

from helpers import settings


def generate_hidden_states(model, cache: StaticCache, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                           max_new_tokens: int) -> torch.Tensor:
    """The ``max_new_tokens`` hidden states GPT-2 generates after ``inputs_embeds``: the pipeline's loop, static.

    ``model`` is a ``GPT2Model``; ``cache`` a ``StaticCache`` of length ``inputs_embeds.shape[1] + max_new_tokens``,
    initialised for this batch, dtype and device. Each new vector is the last layer's output at the last position,
    fed back as the next input, as ``AudioLDM2Pipeline.generate_language_model`` does.
    """
    batch, length, _ = inputs_embeds.shape
    cache.reset()
    mask = torch.cat([attention_mask, attention_mask.new_ones(batch, max_new_tokens)], dim=1)  # new tokens attend
    positions = torch.arange(length + max_new_tokens, device=inputs_embeds.device).unsqueeze(0)
    hidden = model(inputs_embeds=inputs_embeds, attention_mask=mask, past_key_values=cache, use_cache=True,
                   position_ids=positions[:, :length]).last_hidden_state[:, -1:]
    new = [hidden]
    for i in range(length, length + max_new_tokens - 1):
        hidden = model(inputs_embeds=hidden, attention_mask=mask, past_key_values=cache, use_cache=True,
                       position_ids=positions[:, i:i + 1]).last_hidden_state
        new.append(hidden)
    return torch.cat(new, dim=1)


class StaticGPT2(torch.nn.Module):
    """A drop-in ``generate_language_model`` for an AudioLDM 2 pipeline: same arguments, same result, fixed shapes.

    One ``StaticCache`` per input shape, dtype and device, allocated at the first call of that shape. ``compile``
    (a ``torch.compile`` mode, or ``"default"``) compiles the loop with ``fullgraph=True``: one graph per shape;
    ``backend``: ``torch.compile``'s (``"eager"``, Dynamo alone, checks the one graph in seconds). A module, so that
    hooks (``h.stages``' timers) wrap the whole loop from outside, compiled or not.
    """

    def __init__(self, language_model, compile: str | None = None, backend: str = "inductor"):
        super().__init__()
        self.model = getattr(language_model, "transformer", language_model)  # GPT2LMHeadModel -> its GPT2Model
        self.max_new_tokens = language_model.config.max_new_tokens
        self.caches: dict[tuple, StaticCache] = {}
        self.run: Callable[..., torch.Tensor] = generate_hidden_states
        if compile is not None:
            self.run = torch.compile(generate_hidden_states, fullgraph=True, backend=backend,
                                     mode=None if compile == "default" else compile)

    def cache_for(self, inputs_embeds: torch.Tensor, max_new_tokens: int) -> StaticCache:
        batch, length, _ = inputs_embeds.shape
        key = (batch, length, max_new_tokens, inputs_embeds.dtype, inputs_embeds.device)
        if key not in self.caches:
            config = self.model.config
            cache = StaticCache(config=config, max_cache_len=length + max_new_tokens)
            # allocated now, not at the first update: a compiled loop then sees the same tensors every call
            cache.early_initialization(batch, config.n_head, config.n_embd // config.n_head, inputs_embeds.dtype,
                                       inputs_embeds.device)
            self.caches[key] = cache
        return self.caches[key]

    def forward(self, inputs_embeds: torch.Tensor, max_new_tokens: int | None = None,
                 attention_mask: torch.Tensor | None = None, **_) -> torch.Tensor:
        max_new_tokens = max_new_tokens or self.max_new_tokens
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        cache = self.cache_for(inputs_embeds, max_new_tokens)
        # a CUDA graph's output is overwritten by its next replay: the caller gets its own copy
        return self.run(self.model, cache, inputs_embeds, attention_mask, max_new_tokens).clone()


def pipeline_calls(pipe, prompt: str = settings.PROMPT, negative_prompt: str | None = settings.NEGATIVE_PROMPT
                   ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(inputs_embeds, attention_mask, output) of each GPT-2 generation the pipeline runs for one guided clip.

    What :class:`StaticGPT2` must reproduce: the projection's real outputs (the negative prompt's mask has padding
    inside), and the pipeline's own vectors for them.
    """
    calls, own = [], pipe.generate_language_model

    def recorded(inputs_embeds, max_new_tokens=None, **kwargs):
        out = own(inputs_embeds, max_new_tokens=max_new_tokens, **kwargs)
        calls.append((inputs_embeds, kwargs["attention_mask"], out))
        return out

    pipe.generate_language_model = recorded
    try:
        with torch.no_grad():
            pipe.encode_prompt(prompt, pipe._execution_device, 1, True, negative_prompt=negative_prompt)
    finally:
        pipe.__dict__.pop("generate_language_model", None)
    return calls


def use_static_gpt2(pipe, compile: str | None = None, backend: str = "inductor") -> StaticGPT2:
    """Make ``pipe`` generate GPT-2's vectors with :class:`StaticGPT2`; :func:`remove_static_gpt2` undoes it."""
    static = StaticGPT2(pipe.language_model, compile=compile, backend=backend)
    pipe.generate_language_model = static  # on this pipeline only; the class's method is untouched
    return static


def remove_static_gpt2(pipe) -> None:
    """Back to the pipeline's own ``generate_language_model``."""
    pipe.__dict__.pop("generate_language_model", None)
