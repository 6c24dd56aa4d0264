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


def test_environment_report_names_the_installed_versions_and_notes_the_gpt2_fix_first():
    from importlib.metadata import version

    report = environment.environment_report()
    text = str(report)
    for library in environment.LIBRARIES:
        assert f"{library} {version(library)}" in text
    assert report.notes[0].startswith(f"transformers {version('transformers')}: the hub checkpoints' bare GPT2Model")
    assert not any("GPT2Model" in warning for warning in report.warnings)  # the loader fixes it: not a warning


TODAY = {"torch": "2.13.0", "diffusers": "0.42.1", "transformers": "5.23.0", "accelerate": "1.15.0"}
GPT2_NOTE = ("transformers 5.23.0: the hub checkpoints' bare GPT2Model lacks the generation helpers the pipeline calls "
             "(since 4.50); h.load_pipeline loads it as GPT2LMHeadModel, which fixes that (notebook 00, section 3).")
NO_CUDA_NOTE = ("no CUDA GPU: every notebook runs; CUDA graphs (mode=\"reduce-overhead\": rung 5 of 08, the compiled "
                "group of 10), TF32 and CPU offload (07) need one, so they are explained, not measured.")
UNTRUE_HERE = ("fails at the first call", "half precision, torch.compile", "explained rather than measured")


def notes_for(device, capability=None, cpu=None):
    notes = environment.device_notes(TODAY, device, capability, cpu)
    assert not any(phrase in note for note in notes for phrase in UNTRUE_HERE)  # what the report used to say
    return notes


def test_a_cpu_with_avx512_bf16_is_told_that_it_measures_bfloat16():
    """This project's CPU: AVX512-BF16, no AMX. Notebooks 04, 08 and 10 measure bfloat16 on it."""
    from helpers.precision import CpuFeatures

    assert notes_for("cpu", cpu=CpuFeatures(avx512_bf16=True, amx=False)) == [
        GPT2_NOTE,
        "half precision: this CPU computes bfloat16 (AVX512-BF16), so notebooks 04, 08 and 10 measure it; float16 is "
        "emulated on every CPU and not timed.",
        NO_CUDA_NOTE,
    ]
    assert "(AVX512-BF16 and AMX)" in notes_for("cpu", cpu=CpuFeatures(avx512_bf16=True, amx=True))[1]
    assert "(AMX)" in notes_for("cpu", cpu=CpuFeatures(avx512_bf16=False, amx=True))[1]


def test_a_cpu_without_bfloat16_instructions_is_told_it_stays_in_float32():
    from helpers.precision import CpuFeatures

    notes = notes_for("cpu", cpu=CpuFeatures(avx512_bf16=False, amx=False))
    assert notes == [
        GPT2_NOTE,
        "half precision: this CPU has neither AVX512-BF16 nor AMX, so bfloat16 (and float16, on any CPU) would be "
        "emulated, slower than float32: notebooks 04, 08 and 10 stay in float32 and say why.",
        NO_CUDA_NOTE,
    ]
    assert not any("measure it" in note for note in notes)


def test_a_t4_is_told_float16_yes_bfloat16_and_flash_attention_no_and_nothing_about_triton():
    notes = notes_for("cuda", capability=(7, 5))
    assert notes == [
        GPT2_NOTE,
        "half precision: this GPU (CUDA capability 7.5) computes float16, the course's half precision here; bfloat16 "
        "it only emulates (that needs 8.0: an A100, an L4, an H100), so 04 and 10 leave it out. FlashAttention needs "
        "8.0 too: notebook 03 shows which SDPA kernel runs instead.",
    ]
    assert not any("Triton" in note or "no CUDA GPU" in note for note in notes)  # Triton compiles from 7.0
    assert environment.known_problems(TODAY, (True, "Tesla T4, CUDA capability 7.5, Triton installed")) == []


def test_an_a100_and_an_h100_are_told_they_compute_both_half_precisions_and_warned_of_nothing():
    a100 = "half precision: this GPU computes float16 and bfloat16 (CUDA capability 8.0 or more): the course runs " \
           "float16, as the blog did, and notebooks 04 and 10 measure bfloat16 too."
    assert notes_for("cuda", capability=(8, 0)) == [GPT2_NOTE, a100]
    assert notes_for("cuda", capability=(9, 0)) == [GPT2_NOTE, a100]
    assert environment.known_problems(TODAY, (True, "NVIDIA A100, CUDA capability 8.0")) == []


def test_an_apple_gpu_measures_float16_and_no_cuda_lessons():
    assert notes_for("mps") == [
        GPT2_NOTE,
        "half precision: the Apple GPU computes float16, which notebooks 04 and 08 measure; bfloat16 is left out.",
        NO_CUDA_NOTE,
    ]


def test_warnings_are_only_what_stops_a_lesson_here():
    old = {"torch": "2.1.0", "diffusers": "0.20.0", "transformers": "4.31.0", "accelerate": "0.21.0"}
    assert environment.device_notes(old, "cuda", (8, 0))[0].startswith("half precision")  # no GPT-2 note before 4.50
    assert environment.known_problems(old) == []
    assert environment.known_problems({**old, "accelerate": "not installed"}) == [
        "accelerate is not installed: run the set-up cell (Colab) or the README's set-up."]
    assert environment.known_problems(TODAY, (False, "no C++ compiler: apt install g++")) == [
        "torch.compile cannot run here (notebook 05 says so and goes on eager): no C++ compiler: apt install g++"]


def test_the_report_on_this_machine_prints_its_notes_and_no_warning_when_nothing_stops_a_lesson():
    from helpers.compiling import compile_support
    from helpers.precision import CpuFeatures

    report = environment.environment_report()
    lines = str(report).splitlines()
    if report.device == "cpu":
        assert report.notes == environment.device_notes(report.versions, "cpu", cpu=CpuFeatures.of_this_machine())
    assert [line for line in lines if line.startswith("note: ")] == [f"note: {note}" for note in report.notes]
    if compile_support(report.device)[0]:
        assert not any("WARNING" in line for line in lines)


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


def test_the_printed_report_of_an_injected_t4_has_its_notes_and_no_warning_block():
    report = environment.EnvironmentReport(
        python="3.12.12", versions=dict(TODAY, torch="2.9.0+cu126"), device="cuda", device_name="Tesla T4",
        cuda_capability="7.5", gpu_free_gib=14.6, gpu_total_gib=14.7,
        notes=environment.device_notes(TODAY, "cuda", (7, 5)),
        warnings=environment.known_problems(TODAY, (True, "Tesla T4, CUDA capability 7.5, Triton installed")))
    lines = str(report).splitlines()
    assert lines[1] == "torch 2.9.0+cu126 (the course's tests ran torch 2.13.0)"
    assert lines[5:] == ["device: cuda (Tesla T4)", "CUDA capability 7.5; GPU memory free 14.6 of 14.7 GiB",
                         f"note: {GPT2_NOTE}", f"note: {report.notes[1]}"]
    assert not any(line.startswith("WARNING") for line in lines)
