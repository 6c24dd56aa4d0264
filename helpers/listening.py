"""Listening: play one clip, compare several side by side, choose among many, save WAV files.

An ear is the final judge of an optimisation: a faster pipeline that sounds worse is no win. The players
are plain HTML ``<audio>`` elements with the sound inside them (``IPython.display.Audio``): they show in
Colab, JupyterLab, VS Code and in a saved, executed notebook alike, and they do not stall a headless run.
:func:`choose` adds one widget, for a live notebook: radio buttons that switch a single player between
many clips. It replaces the player's HTML; it never puts audio inside an ipywidgets ``Output``, which can stall
a headless run (nbclient sends every output captured in it back to the kernel on the channel it is waiting
on for the cell's reply, and that reply can be missed until the cell's timeout; jupyter/nbclient issue 312).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Mapping

import numpy as np

SAMPLING_RATE = 16_000  # AudioLDM 2's vocoder output


def as_mono(audio) -> np.ndarray:
    """A 1-D float32 array from a numpy array or torch tensor of shape (samples,) or (1, samples)."""
    audio = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float32)
    if audio.ndim == 2 and audio.shape[0] == 1:
        audio = audio[0]
    if audio.ndim != 1:
        raise ValueError(f"Expected one clip of shape (samples,), got shape {audio.shape}: pick one, e.g. audios[0].")
    return audio


def not_finite(audio) -> str | None:
    """None for a clip of finite samples; else one line that says how many are NaN or infinite.

    Half precision can overflow (float16 stops at 65504) and a clip then holds NaN or inf. Every player, plot
    and distance here says so in this line instead of failing deep inside IPython or librosa.
    """
    samples = as_mono(audio)
    nan, inf = int(np.isnan(samples).sum()), int(np.isinf(samples).sum())
    if nan == inf == 0:
        return None
    return f"not finite: {nan} NaN and {inf} infinite samples of {samples.size} (an overflow, e.g. in float16)"


def play(audio, sampling_rate: int = SAMPLING_RATE):
    """An audio player for one clip (shown when it is the last thing in a cell, or with ``display``)."""
    from IPython.display import HTML, Audio

    if problem := not_finite(audio):
        return HTML(f"<p>Nothing to play: this clip is {html.escape(problem)}.</p>")
    return Audio(as_mono(audio), rate=sampling_rate)


def compare(clips: Mapping[str, object], sampling_rate: int = SAMPLING_RATE):
    """Players side by side, each under its label, for A/B listening with the same seed.

    They wrap onto the next line when the page is narrower than the row (a laptop's JupyterLab, many clips).
    """
    from IPython.display import HTML

    players = "".join(
        f'<div style="margin: 0 1.5em 0.5em 0"><b>{html.escape(label)}</b><br>{player_html(audio, sampling_rate)}</div>'
        for label, audio in clips.items()
    )
    return HTML(f'<div style="display: flex; flex-wrap: wrap; align-items: flex-start">{players}</div>')


def player_html(audio, sampling_rate: int = SAMPLING_RATE, autoplay: bool = False) -> str:
    """The HTML of one clip's player (an ``<audio>`` element with the sound inside), or why there is none."""
    from IPython.display import Audio

    if problem := not_finite(audio):
        return f"<p>Nothing to play: this clip is {html.escape(problem)}.</p>"
    return Audio(as_mono(audio), rate=sampling_rate, autoplay=autoplay)._repr_html_()


def choose(clips: Mapping[str, object], sampling_rate: int = SAMPLING_RATE, description: str = "listen to"):
    """One player and a radio button per clip: click a label and its clip plays (ipywidgets 7, as on Colab, or 8).

    For many clips of one run (every rung of the ladder, every scheduler and step count), switching one player
    compares by ear better than a row of players. Each clip's player is made once; a click replaces the HTML
    widget's value (no ``Output`` widget: see this module's docstring). A saved notebook keeps the widget only
    where widgets are rendered, so use :func:`compare` for what must show everywhere.
    """
    import ipywidgets as widgets

    if not clips:
        raise ValueError("choose() needs at least one clip: a mapping such as {'float32': audio, 'float16': audio}.")
    players = {label: player_html(audio, sampling_rate, autoplay=True) for label, audio in clips.items()}
    first = next(iter(players))
    buttons = widgets.RadioButtons(options=list(players), value=first, description=description,
                                   style={"description_width": "initial"}, layout={"width": "max-content"})
    player = widgets.HTML(value=player_html(clips[first], sampling_rate))  # the first one does not start by itself

    def show(change) -> None:
        player.value = players[change["new"]]

    buttons.observe(show, names="value")
    return widgets.VBox([buttons, player])


def save_wav(audio, path: str | os.PathLike, sampling_rate: int = SAMPLING_RATE) -> Path | None:
    """Write one clip as a 16-bit WAV file and return its path (None, said in one line, if it is not finite)."""
    import soundfile

    if problem := not_finite(audio):
        print(f"{path} not written: the clip is {problem}.")
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, as_mono(audio), sampling_rate, subtype="PCM_16")
    return path


def clap_score(pipe, audio, prompt: str, sampling_rate: int = SAMPLING_RATE) -> float:
    """How well ``audio`` matches ``prompt`` for the pipeline's own CLAP model: the cosine of their embeddings.

    The pipeline uses the same model to rank several waveforms (``num_waveforms_per_prompt``). Higher is closer;
    it only means something with real weights (with random ones it is noise around 0).
    """
    import librosa
    import torch

    clap, extractor = pipe.text_encoder, pipe.feature_extractor
    waveform = librosa.resample(as_mono(audio).astype(np.float32), orig_sr=sampling_rate,
                                target_sr=extractor.sampling_rate)
    features = extractor([waveform], sampling_rate=extractor.sampling_rate, return_tensors="pt").input_features
    text = pipe.tokenizer([prompt], padding=True, return_tensors="pt")
    with torch.no_grad():
        output = clap(input_ids=text.input_ids.to(clap.device), attention_mask=text.attention_mask.to(clap.device),
                      input_features=features.to(clap.device, clap.dtype))
    return float(torch.nn.functional.cosine_similarity(output.text_embeds, output.audio_embeds).item())
