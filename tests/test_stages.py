"""Where one generation's time goes: every stage's calls counted and timed, on a fake clock."""

import itertools

from helpers.generating import generate
from helpers.stages import time_stages


def test_every_stage_is_timed_call_by_call_and_the_rest_is_what_no_stage_took(tiny_pipe):
    ticks = itertools.count()  # each reading one second later: a stage's call takes 1 s per module timed
    split = time_stages(tiny_pipe, lambda: generate(tiny_pipe, num_inference_steps=3, audio_length_in_s=1.28), "cpu",
                        steps=3, clock=lambda: float(next(ticks)))
    # Guidance encodes the prompt and the negative one: CLAP, T5 and the projection twice, GPT-2 8 tokens each.
    assert split.calls == {"CLAP text encoder": 2, "T5 text encoder": 2, "projection": 2, "GPT-2": 16, "UNet": 3,
                           "VAE decoder": 1, "vocoder": 1}
    assert split.seconds["CLAP text encoder"] == 4.0 and split.seconds["VAE decoder"] == 2.0  # two modules each
    assert split.seconds["UNet"] == 3.0 and split.per_step_s == 1.0
    assert split.total_s == sum(split.seconds.values()) + split.other_s
    assert split.fixed_s == split.total_s - 3.0
    assert "GPT-2                 16" in str(split) and "UNet per step 1.0000 s" in str(split)
    assert not any(module._forward_hooks for module in tiny_pipe.unet.modules())  # the hooks are gone
