"""h.setup, h.generate and h.measure: the three calls every notebook makes, on the tiny checkpoint."""

import numpy as np
import pytest
import torch

import helpers as h
from helpers import errors, results


def test_generate_returns_every_clip_of_the_call_and_the_same_seed_gives_the_same_clips(tiny_pipe):
    first = h.generate(tiny_pipe, num_inference_steps=2, audio_length_in_s=1.28, num_waveforms_per_prompt=2)
    again = h.generate(tiny_pipe, num_inference_steps=2, audio_length_in_s=1.28, num_waveforms_per_prompt=2)
    other = h.generate(tiny_pipe, num_inference_steps=2, audio_length_in_s=1.28, num_waveforms_per_prompt=2, seed=1)
    assert first.shape == (2, 20_480) and first.dtype == np.float32
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_generate_seeds_its_generator_on_the_device_the_pipeline_computes_on(monkeypatch):
    """As the blog does (torch.Generator("cuda").manual_seed(0)): on a CUDA GPU the noise is then the blog's."""
    import types

    import helpers.generating as generating

    asked, seeds = [], []

    class Generator:  # records where it was asked for; a CUDA one cannot be made on this machine
        def __init__(self, device=None):
            asked.append(torch.device(device))

        def manual_seed(self, seed):
            seeds.append(seed)
            return self

    class Pipe:
        _execution_device = torch.device("cuda", 0)  # what a pipeline moved to the GPU (or offloaded) says

        def __call__(self, prompt, *, generator, **kwargs):
            assert isinstance(generator, Generator)
            return types.SimpleNamespace(audios=np.zeros((1, 4), dtype=np.float32))

    monkeypatch.setattr(generating.torch, "Generator", Generator)
    generating.generate(Pipe(), num_inference_steps=1, audio_length_in_s=0.64, seed=7)
    assert asked == [torch.device("cuda", 0)] and seeds == [7]


def test_generate_passes_the_pipelines_own_arguments_on(tiny_pipe):
    batches = []
    handle = tiny_pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        h.generate(tiny_pipe, num_inference_steps=1, audio_length_in_s=0.64, guidance_scale=1.0)  # no guidance
        h.generate(tiny_pipe, num_inference_steps=1, audio_length_in_s=0.64, negative_prompt="low quality")
    finally:
        handle.remove()
    assert batches == [1, 2]  # guidance_scale reached the pipeline; the negative prompt took the uncond half


def test_measure_times_logs_and_returns_the_first_and_last_clips(tiny_pipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUDIOLDM2_RESULTS", str(tmp_path / "log.jsonl"))
    monkeypatch.setenv("AUDIOLDM2_SMOKE", "0")
    measured = h.measure(tiny_pipe, "tiny, 2 steps", notebook="test", device="cpu", num_inference_steps=2,
                         audio_length_in_s=1.28, num_waveforms_per_prompt=2, repeats=2)
    assert len(measured.timing.warmup_s) == 1 and len(measured.timing.runs_s) == 2
    assert measured.timing.audio_seconds == pytest.approx(2 * 1.28)  # both clips count for the real-time factor
    assert measured.audios.shape == (2, 20_480) and np.array_equal(measured.audios, measured.first_audios)
    assert np.array_equal(measured.audio, measured.audios[0])
    assert measured.memory.host_rss > 0
    [row] = results.read_rows(tmp_path / "log.jsonl")
    assert row == measured.row and row["configuration"] == "tiny, 2 steps" and row["steps"] == 2
    printed = capsys.readouterr().out
    assert "tiny, 2 steps: median" in printed and "peak host memory" in printed


def test_measure_takes_one_timed_run_in_smoke_mode(tiny_pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOLDM2_RESULTS", str(tmp_path / "log.jsonl"))
    monkeypatch.setenv("AUDIOLDM2_SMOKE", "1")
    measured = h.measure(tiny_pipe, "smoke", notebook="test", device="cpu", num_inference_steps=1,
                         audio_length_in_s=0.64, repeats=5)
    assert len(measured.timing.runs_s) == 1 and measured.row["smoke"] is True


def test_setup_prints_the_machine_and_the_checkpoint_and_returns_what_notebooks_use(tiny_checkpoint, capsys):
    pipe, device, checkpoint = h.setup(torch_dtype=torch.float32, device="cpu", model_id=str(tiny_checkpoint))
    printed = capsys.readouterr().out
    assert device == torch.device("cpu") and pipe.unet.dtype == torch.float32
    assert checkpoint.kind == "tiny" and checkpoint.random_weights
    assert f"torch {torch.__version__}" in printed  # the environment report
    assert "model: tiny random weights" in printed
    assert "device: cpu, dtype: float32, scheduler: DDIMScheduler" in printed


def test_say_how_long_offers_a_quick_run_only_when_it_is_long(capsys, monkeypatch):
    monkeypatch.setenv("AUDIOLDM2_SMOKE", "0")  # a real run: smoke runs print no estimate (test_measuring)
    h.say_how_long("two clips", 30)
    assert capsys.readouterr().out == "two clips: about 0.5 min here.\n"
    h.say_how_long("the ladder", 3600)
    printed = capsys.readouterr().out
    assert printed.startswith("the ladder: about 60.0 min here.") and "AUDIOLDM2_SMOKE=1" in printed


def test_note_if_smoke_speaks_only_in_smoke_mode(monkeypatch, capsys):
    monkeypatch.setenv("AUDIOLDM2_SMOKE", "0")
    h.note_if_smoke()
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("AUDIOLDM2_SMOKE", "1")
    h.note_if_smoke()
    assert "measure nothing" in capsys.readouterr().out


def test_explained_cleans_up_before_it_describes_and_lets_other_errors_through():
    order = []

    def describe(error):
        order.append("describe")
        return f"it failed: {error}"

    with pytest.raises(errors.DoesNotFitError, match="it failed: too big") as caught:
        with errors.explained(lambda e: isinstance(e, MemoryError), describe, errors.DoesNotFitError,
                              clean_up=lambda: order.append("clean up")):
            raise MemoryError("too big")
    assert order == ["clean up", "describe"] and caught.value.__suppress_context__
    with pytest.raises(KeyError):
        with errors.explained(lambda e: isinstance(e, MemoryError), describe, errors.DoesNotFitError):
            raise KeyError("not ours")


def test_the_cpu_profile_measures_at_smaller_settings_that_keep_the_lessons_ratios(monkeypatch):
    from helpers import settings

    monkeypatch.delenv("AUDIOLDM2_SMOKE")
    monkeypatch.delenv("AUDIOLDM2_FULL", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # a laptop
    assert settings.cpu_profile()
    assert (settings.steps(200), settings.steps(20)) == (40, 4)  # DDIM to DPM-Solver: still 10 to 1
    assert [settings.steps(n) for n in (3, 9, 10, 25, 50)] == [3, 9, 2, 5, 10]
    assert settings.audio_seconds(10.24) == 2.56 and settings.audio_seconds(40.96) == 10.24
    assert settings.repeats(3) == 3  # real measurements: a median, not one run
    assert settings.smoke_banner().startswith("CPU PROFILE") and "AUDIOLDM2_FULL=1 restores" in settings.smoke_banner()

    monkeypatch.setenv("AUDIOLDM2_FULL", "1")  # the blog's settings, on purpose
    assert not settings.cpu_profile() and settings.steps(200) == 200 and settings.audio_seconds(10.24) == 10.24

    monkeypatch.delenv("AUDIOLDM2_FULL")
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # a CUDA GPU: the text's settings
    assert not settings.cpu_profile() and settings.steps(200) == 200
    assert settings.smoke_banner() == "Full run: steps and audio lengths as the text says."

    monkeypatch.setenv("AUDIOLDM2_SMOKE", "1")  # smoke mode wins everywhere
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert not settings.cpu_profile() and settings.steps(200) == 2
