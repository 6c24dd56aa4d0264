"""The full-size random checkpoint: the real architecture, loaded through the loader (slow: minutes).

Built once into the cache (``$AUDIOLDM2_CACHE`` or ~/.cache/audioldm2-faster), ~4.2 GB.
Skip with ``pytest -m "not slow"``.
"""

import pytest
import torch

from helpers.checkpoints import cached_checkpoint, describe_checkpoint
from helpers.loading import load_pipeline


@pytest.mark.slow
def test_full_size_checkpoint_runs_to_163840_samples():
    path = cached_checkpoint("full-size", "base")
    assert describe_checkpoint(path).kind == "full-size"
    pipe = load_pipeline(path, device="cpu")
    parameters = sum(p.numel() for name in ("unet", "vae", "vocoder", "text_encoder", "text_encoder_2",
                                            "language_model", "projection_model")
                     for p in getattr(pipe, name).parameters())
    assert parameters == pytest.approx(1.118e9, rel=0.01)  # the model card says 1.1 B
    audio = pipe("Techno music", num_inference_steps=2, audio_length_in_s=10.24,
                 generator=torch.Generator("cpu").manual_seed(0)).audios
    assert audio.shape == (1, 163_840)
