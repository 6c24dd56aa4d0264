"""Helpers shared by the notebooks of "AudioLDM 2, faster". The notebooks import them qualified::

    import helpers as h
    pipe, device, checkpoint = h.setup(torch_dtype=torch.float32)
    h.measure(pipe, "float32, DDIM 200 steps", notebook="01_baseline", device=device,
              num_inference_steps=200, audio_length_in_s=10.24)

Each function is explained in the notebook that teaches it (00 for ``setup`` and ``load_pipeline``, 01 for
``generate``, ``measure`` and the timing below them, 07 for ``peak_memory``, 09 for ``flops.stage_flops``, 10 for
``fusing.fuse_qkv`` and ``prompts.encode_prompts``); the blog's optimisations stay in the notebooks, in plain
diffusers and torch calls, and notebook 10's longer techniques live here, one module each. One module per concern:

* ``settings``: which model, smoke mode, where results go (environment variables), the blog's prompt.
* ``session``: ``setup``, what every notebook does first.
* ``loading``: ``load_pipeline`` and the checks that turn set-up problems into clear messages.
* ``precision``: which half precision a device computes natively (float16, bfloat16), as weights or autocast.
* ``checkpoints``: tiny and full-size AudioLDM 2 checkpoints with random weights, for offline runs.
* ``generating``: ``generate``, the pipeline's call from seeded noise.
* ``measuring``: ``measure``, time and peak memory of a generation, logged.
* ``timing``, ``memory``: wall-clock time a GPU cannot fool; peak memory; out-of-memory explained.
* ``diagram``: the pipeline in one picture, with the stages' measured shares on it (notebooks 00 and 09).
* ``stages``: where one generation's time goes (text encoders, GPT-2, UNet, VAE, vocoder), and its profile;
  ``flops``: each stage's operations against the device's peak (notebook 09).
* ``prompts``, ``fusing``, ``deep_cache``: beyond the blog (notebook 10): both prompts encoded in one batch,
  QKV projections fused, the UNet's deep features reused between steps.
* ``solver``: DPM-Solver++ with every step's coefficients worked out before the loop (rung 7): a step is a few
  operations on the latents, none on the host.
* ``gpt2``: GPT-2's eight new vectors from a static key/value cache, one graph per prompt length, equal to the
  pipeline's own (``use_static_gpt2``; issue 25's first piece of the text side).
* ``compiling``: can ``torch.compile`` run here, why it failed, what recompiled; compiled-or-eager modules.
* ``compile_cache``: one folder for what ``torch.compile`` compiled (``use_compile_cache``), shared by every notebook
  and command, so that the UNet compiles once per machine; what a call found there (notebook 05).
* ``quantizing``: the UNet's linear layers in int8 (notebook 10): PyTorch's dynamic int8 on a CPU, torchao's on a GPU.
* ``bench``: ``python -m helpers.bench``, the whole course's measurements in one process, with a deadline.
* ``results``: the log every measurement is appended to, read back as a table.
* ``listening``, ``plots``: players, side-by-side comparisons, spectrograms, charts.
* ``environment``: versions, device, and known problems. ``errors``: the course's errors.
* ``blog``: the figures the blog reports, quoted.
* ``jobs``: a job of many clips on disk (prompts read exactly, stable names, one run per folder, files that
  survive a crash, a manifest), for the command ``python -m helpers.make_clips`` (notebook 11).
* ``run_course``: the course run headless (and the GPU command's results file); ``repository``: the course's
  GitHub address, spelled out in every badge and install cell.
"""

from helpers import (blog, compile_cache, compiling, deep_cache, diagram, errors, flops, fusing, gpt2, memory,
                     precision, prompts, quantizing, recipe, settings, solver, stages)
from helpers.checkpoints import describe_checkpoint
from helpers.compile_cache import use_compile_cache
from helpers.environment import environment_report
from helpers.generating import generate
from helpers.listening import clap_score, compare, play, save_wav
from helpers.loading import default_device, load_pipeline, resolve_checkpoint
from helpers.measuring import measure, note_if_smoke, say_how_long
from helpers.memory import peak_memory
from helpers.plots import plot_clips, plot_spectrogram, plot_speedups, plot_stages, spectral_distance
from helpers.session import setup
from helpers.timing import estimate_step_costs, synchronize, time_once, time_runs

__all__ = [
    "blog", "clap_score", "compare", "compile_cache", "compiling", "deep_cache", "default_device",
    "describe_checkpoint", "diagram", "environment_report", "errors", "estimate_step_costs", "flops", "fusing",
    "generate", "gpt2", "load_pipeline", "measure", "memory", "note_if_smoke", "peak_memory", "play", "plot_clips",
    "plot_spectrogram", "plot_speedups", "plot_stages", "precision", "prompts", "quantizing", "recipe",
    "resolve_checkpoint", "save_wav", "say_how_long", "settings", "setup", "solver", "spectral_distance", "stages",
    "synchronize", "time_once", "time_runs", "use_compile_cache",
]

# Set-up that every notebook wants, done once on import (each function's docstring says why):
from helpers.environment import quiet_cpu_profiler  # noqa: E402
from helpers.loading import hide_loading_bars  # noqa: E402

quiet_cpu_profiler()  # no "USDT: profiler_start" lines under every profiled cell on a CPU
hide_loading_bars()  # no stacked "Loading weights" bars from transformers and diffusers; the hub's download bar stays
compiling.quiet_traced_version_checks()  # no warning that Dynamo traced diffusers' cached version check
