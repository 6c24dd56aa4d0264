"""Pictures of sound and of speed: mel spectrograms, waveforms, and the speed-up chart.

A mel spectrogram is how AudioLDM 2 itself sees audio (64 mel bins, one frame every 10 ms), so it is
the natural picture to put next to a clip.
"""

from __future__ import annotations

import textwrap

import numpy as np

from helpers import settings
from helpers.listening import SAMPLING_RATE, as_mono, not_finite


def log_mel(audio, sampling_rate: int = SAMPLING_RATE, n_mels: int = 64, hop_length: int = 160) -> np.ndarray:
    """Log-mel spectrogram in dB (n_mels x frames), with AudioLDM 2's own 64 bins and 10 ms hop."""
    import librosa

    mel = librosa.feature.melspectrogram(y=as_mono(audio), sr=sampling_rate, n_fft=1024, hop_length=hop_length,
                                         n_mels=n_mels)
    return librosa.power_to_db(mel, ref=1.0, top_db=None)


def spectral_distance(audio_a, audio_b, sampling_rate: int = SAMPLING_RATE) -> float:
    """Mean absolute difference of two clips' log-mel spectrograms, in dB: 0 means identical spectra.

    A number for "how close does the audio stay" that does not depend on phase, which the ear hardly
    hears but a sample-by-sample difference punishes.
    """
    for which, audio in (("first", audio_a), ("second", audio_b)):
        if problem := not_finite(audio):
            print(f"spectral distance: the {which} clip is {problem}; the distance is nan.")
            return float("nan")
    a, b = log_mel(audio_a, sampling_rate), log_mel(audio_b, sampling_rate)
    frames = min(a.shape[1], b.shape[1])
    floor = -100.0  # dB: silence below this counts as silence, so that log(0) cannot dominate
    return float(np.mean(np.abs(np.maximum(a[:, :frames], floor) - np.maximum(b[:, :frames], floor))))


def plot_spectrogram(audio, sampling_rate: int = SAMPLING_RATE, title: str = "", ax=None):
    """Draw the log-mel spectrogram of one clip; returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    if problem := not_finite(audio):  # librosa would raise: say it in the plot instead
        ax.text(0.5, 0.5, f"nothing to draw: {problem}", ha="center", va="center", wrap=True)
        ax.set(title=title or "log-mel spectrogram", xticks=[], yticks=[])
        return ax
    mel = log_mel(audio, sampling_rate)
    seconds = len(as_mono(audio)) / sampling_rate
    image = ax.imshow(mel, origin="lower", aspect="auto", extent=(0, seconds, 0, mel.shape[0]), cmap="magma")
    ax.set(xlabel="time (s)", ylabel="mel bin", title=title or "log-mel spectrogram")
    ax.figure.colorbar(image, ax=ax, label="dB")
    return ax


def plot_waveform(audio, sampling_rate: int = SAMPLING_RATE, title: str = "", ax=None):
    """Draw one clip's waveform; returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 2))
    samples = as_mono(audio)
    ax.plot(np.arange(len(samples)) / sampling_rate, samples, linewidth=0.5)
    ax.set(xlabel="time (s)", ylabel="amplitude", title=title or "waveform")
    return ax


def plot_clips(clips: dict, sampling_rate: int = SAMPLING_RATE):
    """Spectrograms of several clips stacked, one per label, on a shared time axis."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(clips), 1, figsize=(8, 2.6 * len(clips)), squeeze=False, sharex=True)
    for ax, (label, audio) in zip(axes[:, 0], clips.items()):
        plot_spectrogram(audio, sampling_rate, title=label, ax=ax)
    fig.tight_layout()
    return fig


def with_smoke_note(title: str, smoke: bool | None = None) -> str:
    """``title``, plus "(smoke run: these figures measure nothing)" in a smoke run (``None``: ask the settings)."""
    smoke = settings.smoke_mode() if smoke is None else smoke
    return f"{title} (smoke run: these figures measure nothing)" if smoke else title


def plot_speedups(labels: list[str], seconds: list[float], title: str = "Latency per 10.24 s clip",
                  smoke: bool | None = None, speedups: list[str] | None = None):
    """A horizontal bar chart of latency, each bar annotated with its speed-up over the first.

    ``speedups``: the text beside each bar instead, e.g. a table's column from
    :func:`helpers.timing.speedup_text`, so that a difference below the noise floor reads "within noise" on the
    chart as in the table ("" for none). ``smoke``: ``None`` asks :func:`helpers.settings.smoke_mode`. A smoke
    run's bars time capped generations, so the title says so; pass ``smoke=False`` for figures quoted from
    elsewhere (the blog's). Long titles wrap and the layout makes room for long labels (matplotlib's constrained
    layout), so that nothing is cut.
    """
    import matplotlib.pyplot as plt

    title = with_smoke_note(title, smoke)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(labels) + 1.8), layout="constrained")
    positions = np.arange(len(labels))[::-1]
    ax.barh(positions, seconds, color="tab:blue")
    ax.set_yticks(positions, [textwrap.shorten(label, 60, placeholder=" ...") for label in labels])
    notes = speedups if speedups is not None else [f"{seconds[0] / value:.1f}x" for value in seconds]
    for position, value, note in zip(positions, seconds, notes):
        ax.text(value, position, f"  {value:.3g} s" + (f" ({note})" if note else ""), va="center")
    ax.set(xlabel="median seconds (lower is faster)")
    fig.suptitle(textwrap.fill(title, 70))  # centred on the figure, not on axes pushed right by long labels
    ax.set_xlim(0, max(seconds) * 1.45)
    return fig


def plot_stages(stage_times: dict, title: str = "Where one generation's time goes", smoke: bool | None = None):
    """Stacked bars: for each label, the seconds of each stage of a :class:`helpers.stages.StageTimes`.

    ``smoke``: ``None`` asks :func:`helpers.settings.smoke_mode`; a smoke run's title says that it measures nothing.
    """
    import matplotlib.pyplot as plt

    title = with_smoke_note(title, smoke)
    labels = list(stage_times)
    stages = [*next(iter(stage_times.values())).seconds, "everything else"]
    fig, ax = plt.subplots(figsize=(9, 2.4 + 0.5 * len(labels)), layout="constrained")
    left = np.zeros(len(labels))
    for stage in stages:
        widths = np.array([times.other_s if stage == "everything else" else times.seconds[stage]
                           for times in stage_times.values()])
        ax.barh(labels, widths, left=left, label=stage)
        left += widths
    from helpers.stages import how_stages_are_timed

    ax.set_xlabel(f"seconds ({how_stages_are_timed(next(iter(stage_times.values())).device)})")
    ax.invert_yaxis()
    fig.suptitle(textwrap.fill(title, 70))
    fig.legend(loc="outside lower center", ncol=4, fontsize="small")  # below the axis label, never over it
    return ax
