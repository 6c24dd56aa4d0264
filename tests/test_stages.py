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


# --------------------------------------------------------------------------------------------
# One profiled clip, per denoising step
# --------------------------------------------------------------------------------------------
class _Range:
    def __init__(self, start, end):
        self.start, self.end = start, end


class _ProfiledEvent:
    """What step_profile reads of a torch.profiler FunctionEvent (times in microseconds, as the profiler's)."""

    def __init__(self, name, start, end, *, gpu=False, launch=0, parent=None, annotation=False):
        from torch.autograd import DeviceType

        self.name, self.time_range, self.linked_correlation_id = name, _Range(start, end), launch
        self.device_type = DeviceType.CUDA if gpu else DeviceType.CPU
        self.cpu_parent, self.is_user_annotation = parent, annotation


class _Profile:
    def __init__(self, events):
        self._events = events

    def events(self):
        return self._events


def test_a_gpu_profile_places_each_kernel_by_its_launch_and_reads_a_host_bound_loop():
    from helpers.stages import step_profile

    E = _ProfiledEvent
    events = [
        E("T5 text encoder", 0, 100), E("cudaLaunchKernel", 10, 12, launch=1), E("t5_gemm", 20, 60, gpu=True, launch=1),
        # two UNet steps of 1000 us each on the GPU's clock, 2 kernels a step, busy 400 us a step
        E("UNet", 200, 300), E("cudaGraphLaunch", 210, 220, launch=2),
        E("conv", 1000, 1300, gpu=True, launch=2), E("attention", 1300, 1400, gpu=True, launch=2),
        E("scheduler_add", 1500, 1550, gpu=True, launch=9),  # the scheduler's kernel: inside the window, busy too
        E("cudaLaunchKernel", 400, 401, launch=9),
        E("UNet", 450, 500), E("cudaGraphLaunch", 460, 470, launch=3),
        E("conv", 2000, 2300, gpu=True, launch=3), E("attention", 2250, 2400, gpu=True, launch=3),  # overlapping
        E("UNet", 2500, 2700, gpu=True, annotation=True),  # the GPU's copy of a range: not work
        E("vocoder_kernel", 3000, 3100, gpu=True, launch=77),  # its launch was not recorded
    ]
    profile = step_profile(_Profile(events))
    assert (profile.work, profile.steps, profile.unplaced) == ("GPU kernels and copies", 2, 1)
    assert profile.span_per_step_s == 0.0007  # the window: 1000 us to 2400 us, over 2 steps
    assert round(profile.busy_per_step_s, 9) == 0.000425  # 300 + 100 + 50 + 400 (the overlap once), over 2 steps
    assert profile.launches_per_step == 2.5  # the scheduler's kernel counted with the steps
    assert profile.clip_launches == 7 and round(profile.clip_busy_s, 9) == 0.00099  # 40 + 850 + 100
    assert profile.clip_span_s == 0.00308
    assert profile.verdict().startswith("host-bound: the GPU waits 39% of each step")
    assert "1 of the GPU kernels and copies had no launch in the profile" in str(profile)
    assert profile.floor_line(2e9, 20e12) == ("a step's FLOP floor: 2.0 GFLOP at 20.00 TFLOP/s = 0.10 ms; the step is "
                                              "busy 4.2x that and takes 7.0x that")


def test_a_cpu_profile_counts_the_outermost_operators_inside_the_unet_calls(tiny_pipe):
    from helpers.stages import profile_stages, step_profile

    profiler = profile_stages(tiny_pipe, lambda: generate(tiny_pipe, num_inference_steps=3, audio_length_in_s=1.28),
                              "cpu")
    profile = step_profile(profiler)
    assert (profile.work, profile.steps, profile.unplaced) == ("CPU operators", 3, 0)
    assert 0 < profile.busy_per_step_s <= profile.span_per_step_s and profile.launches_per_step > 10
    assert 0 < profile.clip_busy_s <= profile.clip_span_s and profile.clip_launches > 3 * profile.launches_per_step
    assert "of each step is Python between PyTorch's operators" in profile.verdict(bound_share=1.01)
    assert profile.verdict(bound_share=0.0).startswith("bound by the work")


def test_a_profile_without_the_loops_ranges_says_how_to_make_one():
    import pytest

    from helpers.stages import step_profile

    with pytest.raises(ValueError, match="profile the generation with profile_stages"):
        step_profile(_Profile([_ProfiledEvent("aten::mm", 0, 1)]))
