"""The prompt's side of a generation, done once and in one batch (notebook 10).

``AudioLDM2Pipeline.encode_prompt`` runs every text model twice, once for the prompts and once for the negative
prompts, and pads CLAP's input to 512 tokens, whatever the prompt's length. Once the UNet is fast, that is half
of a clip's time (notebook 09). :func:`encode_prompts` runs the same models on all the texts in one batch, pads
CLAP only to the longest, gives the same numbers as the pipeline, and returns the pipeline's own
``prompt_embeds=...`` arguments, so the result can be
kept and passed to every call that uses the same prompts.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def encode_prompts(pipe, prompt: str | list[str], negative_prompt: str | list[str], *,
                   max_new_tokens: int | None = None) -> dict:
    """The six embedding arguments of ``pipe(...)`` for the prompts and their negative prompts.

    Pass them on as ``pipe(prompt=None, **encode_prompts(pipe, prompt, negative_prompt), ...)`` (or to
    :func:`helpers.generate` with ``prompt=None``). Each text model runs once, on every prompt and negative prompt
    in one batch. ``prompt``: one text or a list; ``negative_prompt``: one text for all, or one per prompt.
    """
    device = pipe.text_encoder_2.device
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
    n = len(prompts)
    # CLAP: padded to the longest of the texts, not to 512; its output is the first token's, so the
    # padding was never read anyway (the attention mask hides it)
    clap_inputs = pipe.tokenizer(prompts + negatives, padding="longest", truncation=True,
                                 return_tensors="pt").to(device)
    clap = pipe.text_encoder.get_text_features(clap_inputs.input_ids, attention_mask=clap_inputs.attention_mask)
    clap = getattr(clap, "pooler_output", clap)[:, None, :]  # transformers 5 returns an output object
    clap_mask = clap_inputs.attention_mask.new_ones((2 * n, 1))
    # T5: the prompts padded to the longest, the negative prompts padded, or cut, to that length, as the pipeline
    # does (GPT-2 reads the padding's positions, so any other padding would change its result)
    prompt_ids = pipe.tokenizer_2(prompts, padding=True, truncation=True, return_tensors="pt")
    negative_ids = pipe.tokenizer_2(negatives, padding="max_length", max_length=prompt_ids.input_ids.shape[1],
                                    truncation=True, return_tensors="pt")
    t5_inputs = {key: torch.cat([prompt_ids[key], negative_ids[key]]).to(device)
                 for key in ("input_ids", "attention_mask")}
    t5 = pipe.text_encoder_2(t5_inputs["input_ids"], attention_mask=t5_inputs["attention_mask"])[0]
    projected = pipe.projection_model(hidden_states=clap, hidden_states_1=t5, attention_mask=clap_mask,
                                      attention_mask_1=t5_inputs["attention_mask"])
    generated = pipe.generate_language_model(projected.hidden_states, attention_mask=projected.attention_mask,
                                             max_new_tokens=max_new_tokens)
    mask = t5_inputs["attention_mask"]
    return {
        "prompt_embeds": t5[:n], "negative_prompt_embeds": t5[n:],
        "attention_mask": mask[:n], "negative_attention_mask": mask[n:],
        "generated_prompt_embeds": generated[:n], "negative_generated_prompt_embeds": generated[n:],
    }


def batch_prompt_encoding(pipe) -> None:
    """From now on, ``pipe(prompt, negative_prompt=...)`` encodes all its prompts with :func:`encode_prompts`.

    One change with nothing else to edit: the pipeline's own ``encode_prompt`` is replaced, on this pipeline only,
    by one that computes the embeddings in one batch and hands them to the original (which repeats them per
    waveform and joins them for guidance, as before). A prompt or a list of them, with a negative prompt or one
    per prompt; anything else (no negative prompt, lists of different lengths, embeddings passed in) goes to the
    original unchanged. ``del pipe.encode_prompt`` undoes it.
    """
    original = type(pipe).encode_prompt

    def encode_prompt(prompt, device, num_waveforms_per_prompt, do_classifier_free_guidance, transcription=None,
                      negative_prompt=None, **kwargs):
        given = any(value is not None for key, value in kwargs.items() if key != "max_new_tokens")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        negatives = [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
        texts = isinstance(prompts, list) and isinstance(negatives, list) and all(
            isinstance(text, str) for text in prompts + negatives)
        one_each = isinstance(negative_prompt, str) or (texts and len(negatives) == len(prompts))
        if texts and one_each and do_classifier_free_guidance and not given:
            kwargs.update(encode_prompts(pipe, prompt, negative_prompt, max_new_tokens=kwargs.get("max_new_tokens")))
            prompt = negative_prompt = None
        return original(pipe, prompt, device, num_waveforms_per_prompt, do_classifier_free_guidance, transcription,
                        negative_prompt, **kwargs)

    pipe.encode_prompt = encode_prompt


TEXT_MODELS = ("text_encoder.text_model", "text_encoder_2")  # CLAP's text model and T5: the text side's two encoders


def compile_text_encoders(pipe, *, mode: str | None = None, backend: str = "inductor") -> list[str]:
    """Compile CLAP's text model and T5 in place, each as one graph (``fullgraph=True``); returns what it compiled.

    ``Module.compile`` keeps each module where the pipeline looks for it (its type, its config and its dtype unchanged);
    only its call goes through the compiler. With :func:`batch_prompt_encoding` both prompts arrive as one batch,
    padded to the longer one: one graph per prompt length, and after a second length PyTorch marks the length dynamic
    (one graph for every later one). :func:`uncompile_text_encoders` undoes it.
    """
    compiled = []
    for name in TEXT_MODELS:
        module = pipe
        for part in name.split("."):
            module = getattr(module, part)
        module.compile(fullgraph=True, mode=mode, backend=backend)
        compiled.append(name)
    return compiled


def uncompile_text_encoders(pipe) -> None:
    """Undo :func:`compile_text_encoders`: each encoder's own eager call again."""
    for module in (pipe.text_encoder.text_model, pipe.text_encoder_2):
        module._compiled_call_impl = None
