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


class _FakeEvent:
    """A CUDA event on a fake GPU clock: ``record()`` stamps the clock's next reading."""

    def __init__(self, clock, log):
        self.clock, self.log, self.stamp = clock, log, None

    def record(self):
        self.stamp = self.clock()
        self.log.append("record")

    def elapsed_time(self, end):  # milliseconds, as torch.cuda.Event's
        assert self.stamp is not None and end.stamp is not None, "read before both were recorded"
        return (end.stamp - self.stamp) * 1000.0

    def synchronize(self):
        self.log.append("synchronize")


def test_on_cuda_the_split_records_events_and_waits_once_at_the_end(tiny_pipe, monkeypatch):
    import torch

    def no_sync(*args, **kwargs):
        raise AssertionError("the event path must not synchronise the device at a hook")

    monkeypatch.setattr(torch.cuda, "synchronize", no_sync)
    ticks, log = itertools.count(), []
    split = time_stages(tiny_pipe, lambda: generate(tiny_pipe, num_inference_steps=3, audio_length_in_s=1.28), "cuda",
                        steps=3, new_event=lambda: _FakeEvent(lambda: float(next(ticks)), log))
    assert log.count("synchronize") == 1 and log[-1] == "synchronize"  # one wait, after the last mark
    # every module call is one tick between its two events, as on the clock path
    assert split.seconds["UNet"] == 3.0 and split.seconds["VAE decoder"] == 2.0 and split.calls["GPT-2"] == 16
    assert split.total_s == log.count("record") - 1  # the first mark to the last, one tick per mark
    assert split.device == "cuda"


def test_gpt2_from_a_static_cache_is_timed_as_one_call_per_generation(tiny_pipe):
    from helpers.gpt2 import remove_static_gpt2, use_static_gpt2

    use_static_gpt2(tiny_pipe)  # it runs GPT2Model alone: the language model's own hook would never fire
    try:
        ticks = itertools.count()
        split = time_stages(tiny_pipe, lambda: generate(tiny_pipe, num_inference_steps=3, audio_length_in_s=1.28),
                            "cpu", steps=3, clock=lambda: float(next(ticks)))
    finally:
        remove_static_gpt2(tiny_pipe)
    assert split.calls["GPT-2"] == 2 and split.seconds["GPT-2"] == 2.0  # the prompt's loop and the negative one's
