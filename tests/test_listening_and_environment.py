"""Players, plots, and the environment report."""

import numpy as np
import pytest
import soundfile

from helpers import environment, listening, plots

SR = 16000
TONE = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32) * 0.5


def test_play_makes_a_wav_at_16_khz():
    wav = listening.play(TONE[None, :]).data
    assert wav[:4] == b"RIFF" and int.from_bytes(wav[24:28], "little") == SR  # the WAV header's sample rate


def test_compare_is_plain_html_with_one_labelled_player_per_clip():
    """HTML, not widgets: it renders in any front end and in saved notebooks, and cannot stall nbclient."""
    from IPython.display import HTML

    players = listening.compare({"float32": TONE, "float16 <fast>": TONE * 0.9})
    assert isinstance(players, HTML)
    text = players.data
    assert text.count("<audio") == 2 and text.count("data:audio/wav;base64,") == 2
    assert text.index("<b>float32</b>") < text.index("<b>float16 &lt;fast&gt;</b>")  # in order, escaped


def test_a_batch_is_not_mistaken_for_one_clip():
    with pytest.raises(ValueError, match="pick one"):
        listening.play(np.zeros((2, 100)))


def test_save_wav_round_trip(tmp_path):
    path = listening.save_wav(TONE, tmp_path / "clips" / "tone.wav")
    data, rate = soundfile.read(path)
    assert rate == SR and len(data) == SR and np.abs(data - TONE).max() < 1e-3


def test_spectral_distance_is_zero_for_the_same_clip_and_large_for_noise():
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    assert plots.spectral_distance(TONE, TONE) == 0.0
    assert plots.spectral_distance(TONE, TONE * 1.0001) < 0.01
    assert plots.spectral_distance(TONE, noise) > 5.0


def test_plots_show_64_mel_bins_and_label_speedups_against_the_first_bar():
    ax = plots.plot_spectrogram(TONE, title="tone")
    assert ax.get_title() == "tone" and ax.images[0].get_array().shape[0] == 64
    assert plots.plot_waveform(TONE).lines
    figure = plots.plot_speedups(["baseline", "fast"], [10.0, 1.0])
    assert "10.0x" in " ".join(t.get_text() for t in figure.axes[0].texts)
    # A difference below the noise floor reads as the table says it, not as a ratio.
    figure = plots.plot_speedups(["baseline", "same again"], [10.0, 9.6], speedups=["", "within noise"])
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["  10 s", "  9.6 s (within noise)"]


def test_environment_report_names_the_installed_versions_and_the_gpt2_problem_first():
    from importlib.metadata import version

    report = environment.environment_report()
    text = str(report)
    for library in environment.LIBRARIES:
        assert f"{library} {version(library)}" in text
    assert report.warnings[0].startswith("transformers >= 4.50")


def test_known_problems_flag_old_gpus_for_bfloat16_and_missing_libraries():
    old = {"torch": "2.1.0", "diffusers": "0.20.0", "transformers": "4.31.0", "accelerate": "0.21.0"}
    assert environment.known_problems(old, "cuda", (8, 0)) == []
    t4 = environment.known_problems(old, "cuda", (7, 5))
    assert any("bfloat16" in warning for warning in t4)
    missing = environment.known_problems({**old, "accelerate": "not installed"}, "cuda", (9, 0))
    assert any("accelerate is not installed" in warning for warning in missing)


def test_report_says_which_torch_the_course_was_tested_with_when_it_runs_another():
    pinned = environment.tested_versions()
    assert pinned["torch"] == "2.13.0" and pinned["diffusers"] == "0.42.1"  # from the installed course's metadata
    report = environment.environment_report()
    report.versions.update(torch="2.11.0+cu130", diffusers=pinned["diffusers"])  # Colab's own torch, say
    lines = str(report).splitlines()
    assert "torch 2.11.0+cu130 (the course's tests ran torch 2.13.0)" in lines
    assert f"diffusers {pinned['diffusers']}" in lines  # the pinned one: nothing added


def test_a_clip_that_is_not_finite_is_reported_in_one_line_by_every_player_plot_and_distance(tmp_path, capsys):
    clip = np.zeros(16_000, dtype=np.float32)
    clip[[3, 7]], clip[9] = np.nan, np.inf  # what a float16 overflow leaves
    fine = np.sin(np.linspace(0, 2000, 16_000)).astype(np.float32)
    assert listening.not_finite(fine) is None
    assert listening.not_finite(clip) == "not finite: 2 NaN and 1 infinite samples of 16000 (an overflow, e.g. in float16)"

    assert "Nothing to play: this clip is not finite: 2 NaN" in listening.play(clip)._repr_html_()
    table = listening.compare({"fine": fine, "broken": clip}).data
    assert table.count("<audio") == 1 and "Nothing to play" in table
    assert np.isnan(plots.spectral_distance(fine, clip))
    assert capsys.readouterr().out == "spectral distance: the second clip is not finite: 2 NaN and 1 infinite samples " \
                                      "of 16000 (an overflow, e.g. in float16); the distance is nan.\n"
    ax = plots.plot_spectrogram(clip, title="float16")
    assert ax.get_title() == "float16" and "nothing to draw: not finite" in ax.texts[0].get_text()
    assert len(plots.plot_clips({"fine": fine, "broken": clip}).axes) == 3  # two plots and the fine one's colorbar
    assert listening.save_wav(clip, tmp_path / "broken.wav") is None and not (tmp_path / "broken.wav").exists()
    assert "broken.wav not written: the clip is not finite" in capsys.readouterr().out
