"""One way to generate: the pipeline's own call, from the same seeded noise every time.

Notebook 01 shows this function and explains it; every later notebook calls it, so that each clip of the
course starts from the same noise and two settings can be compared by ear and by number.
"""

from __future__ import annotations

import numpy as np
import torch

from helpers import settings


def generate(
    pipe,
    prompt: str | list[str] = settings.PROMPT,
    *,
    num_inference_steps: int,
    audio_length_in_s: float,
    negative_prompt: str | list[str] | None = None,
    num_waveforms_per_prompt: int = 1,
    seed: int = settings.SEED,
    **pipe_kwargs,
) -> np.ndarray:
    """Clips of ``prompt`` as an array of shape (waveforms, samples), 16 000 samples per second.

    The arguments are the pipeline's, with the same names; ``pipe_kwargs`` passes any other one on
    (``guidance_scale=1.0``, ...). The one addition is ``seed``: each call makes a fresh ``torch.Generator``
    seeded with it, as the blog does, on the device the pipeline computes on, so the starting noise is the same
    on every call. A CUDA generator draws other numbers than a CPU one: on a CUDA GPU the noise is the blog's.
    """
    generator = torch.Generator(device=pipe._execution_device).manual_seed(seed)
    return pipe(
        prompt,
        negative_prompt=negative_prompt,
        num_inference_steps=num_inference_steps,
        audio_length_in_s=audio_length_in_s,
        num_waveforms_per_prompt=num_waveforms_per_prompt,
        generator=generator,
        **pipe_kwargs,
    ).audios
