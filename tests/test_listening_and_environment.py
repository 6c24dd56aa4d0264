"""Players, plots, and the environment report."""

import numpy as np
import pytest
import soundfile

from helpers import environment, listening, plots

SR = 16000
TONE = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32) * 0.5


def test_play_and_compare():
    wav = listening.play(TONE[None, :]).data
    assert wav[:4] == b"RIFF" and int.from_bytes(wav[24:28], "little") == SR  # the WAV header's sample rate
    box = listening.compare({"float32": TONE, "float16": TONE * 0.9})
    labels = [column.children[0].value for column in box.children]
    assert labels == ["<b>float32</b>", "<b>float16</b>"]


def test_a_batch_is_not_mistaken_for_one_clip():
    with pytest.raises(ValueError, match="pick one"):
        listening.play(np.zeros((2, 100)))


def test_save_wav_round_trip(tmp_path):
    path = listening.save_wav(TONE, tmp_path / "clips" / "tone.wav")
    data, rate = soundfile.read(path)
    assert rate == SR and len(data) == SR and np.abs(data - TONE).max() < 1e-3


def test_spectral_distance():
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    assert plots.spectral_distance(TONE, TONE) == 0.0
    assert plots.spectral_distance(TONE, TONE * 1.0001) < 0.01
    assert plots.spectral_distance(TONE, noise) > 5.0


def test_plots_draw():
    ax = plots.plot_spectrogram(TONE, title="tone")
    assert ax.get_title() == "tone" and ax.images[0].get_array().shape[0] == 64
    assert plots.plot_waveform(TONE).lines
    figure = plots.plot_speedups(["baseline", "fast"], [10.0, 1.0])
    assert "10.0x" in " ".join(t.get_text() for t in figure.axes[0].texts)


def test_environment_report_names_versions_and_the_gpt2_problem_first():
    report = environment.environment_report()
    text = str(report)
    assert "diffusers 0.42.1" in text and "transformers 5.23.0" in text
    assert report.warnings[0].startswith("transformers >= 4.50")


def test_known_problems():
    old = {"torch": "2.1.0", "diffusers": "0.20.0", "transformers": "4.31.0", "accelerate": "0.21.0"}
    assert environment.known_problems(old, "cuda", (8, 0)) == []
    t4 = environment.known_problems(old, "cuda", (7, 5))
    assert any("bfloat16" in warning for warning in t4)
    missing = environment.known_problems({**old, "accelerate": "not installed"}, "cuda", (9, 0))
    assert any("accelerate is not installed" in warning for warning in missing)
