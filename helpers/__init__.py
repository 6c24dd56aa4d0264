"""Helpers shared by the notebooks of "AudioLDM 2, faster".

They load the pipeline, measure it honestly and let you listen; the optimisations themselves stay in
the notebooks, in plain diffusers calls. One module per concern:

* ``settings``: which model, smoke mode, where results go (environment variables).
* ``loading``: ``load_pipeline`` and the checks that turn set-up problems into clear messages.
* ``checkpoints``: tiny and full-size AudioLDM 2 checkpoints with random weights, for offline runs.
* ``timing``, ``memory``: wall-clock time a GPU cannot fool; peak memory.
* ``results``: the log every measurement is appended to, read back as a table.
* ``listening``, ``plots``: players, side-by-side comparisons, spectrograms, charts.
* ``environment``: versions, device, and known problems.
"""

from helpers.checkpoints import describe_checkpoint
from helpers.environment import environment_report
from helpers.errors import CourseError
from helpers.listening import compare, play, save_wav
from helpers.loading import default_device, load_pipeline
from helpers.memory import peak_memory
from helpers.plots import plot_clips, plot_spectrogram, plot_speedups, plot_waveform, spectral_distance
from helpers.results import read_table, record
from helpers.timing import time_runs

__all__ = [
    "CourseError", "compare", "default_device", "describe_checkpoint", "environment_report", "load_pipeline",
    "peak_memory", "play", "plot_clips", "plot_spectrogram", "plot_speedups", "plot_waveform", "read_table",
    "record", "save_wav", "spectral_distance", "time_runs",
]
