"""Listening: play one clip, compare several side by side, save WAV files.

An ear is the final judge of an optimisation: a faster pipeline that sounds worse is no win. These are
thin wrappers on ``IPython.display.Audio`` and ipywidgets, kept here so that every notebook lays out
its comparisons the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

SAMPLING_RATE = 16_000  # AudioLDM 2's vocoder output


def _as_mono(audio) -> np.ndarray:
    """A 1-D float32 array from a numpy array or torch tensor of shape (samples,) or (1, samples)."""
    audio = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float32)
    if audio.ndim == 2 and audio.shape[0] == 1:
        audio = audio[0]
    if audio.ndim != 1:
        raise ValueError(f"Expected one clip of shape (samples,), got shape {audio.shape}: pick one, e.g. audios[0].")
    return audio


def play(audio, sampling_rate: int = SAMPLING_RATE):
    """An audio player for one clip (shown when it is the last thing in a cell, or with ``display``)."""
    from IPython.display import Audio

    return Audio(_as_mono(audio), rate=sampling_rate)


def compare(clips: Mapping[str, object], sampling_rate: int = SAMPLING_RATE):
    """Players side by side, each under its label, for A/B listening with the same seed."""
    import ipywidgets as widgets

    columns = []
    for label, audio in clips.items():
        output = widgets.Output()
        with output:
            from IPython.display import display

            display(play(audio, sampling_rate))
        columns.append(widgets.VBox([widgets.HTML(f"<b>{label}</b>"), output]))
    return widgets.HBox(columns)


def save_wav(audio, path: str | os.PathLike, sampling_rate: int = SAMPLING_RATE) -> Path:
    """Write one clip as a 16-bit WAV file and return its path."""
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, _as_mono(audio), sampling_rate, subtype="PCM_16")
    return path
