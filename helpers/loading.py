"""Loading AudioLDM 2 so that it runs on today's diffusers and transformers.

The one fix you need to know: the hub checkpoints (``cvssp/audioldm2`` and friends) store their
language model as a bare ``GPT2Model``. Since transformers 4.50 a bare ``GPT2Model`` has no generation
helpers, and the pipeline's ``generate_language_model`` fails at the first call with
``'GPT2Model' object has no attribute '_update_model_kwargs_for_generation'``. diffusers declares the
component as ``GPT2LMHeadModel``, so we load the same weights as that class and hand it to the pipeline::

    language_model = GPT2LMHeadModel.from_pretrained(model_id, subfolder="language_model")
    pipe = AudioLDM2Pipeline.from_pretrained(model_id, language_model=language_model)

Everything else here turns the errors a learner meets (no network, a wrong id, no GPU, half
precision on a CPU) into a message that says what to do.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch

from helpers import settings
from helpers.errors import (
    HalfPrecisionOnCPUError,
    NoGPUError,
    NoNetworkError,
    NotAnAudioLDM2CheckpointError,
    UnknownCheckpointError,
)

HUB_HOST = "huggingface.co"
OFFLINE_HELP = (
    "To run offline, point AUDIOLDM2_MODEL at a checkpoint on disk: a real one downloaded earlier "
    "(huggingface-cli download cvssp/audioldm2 --local-dir DIR, then export AUDIOLDM2_MODEL=DIR), or a "
    "random-weights one this course builds itself: export AUDIOLDM2_MODEL=tiny (seconds; noise, for a dry run) "
    "or AUDIOLDM2_MODEL=full-size (minutes, ~4.2 GB; the real model's speed and memory, not its sound)."
)
REQUIRED_SUBFOLDERS = (
    "unet", "vae", "vocoder", "text_encoder", "text_encoder_2", "language_model", "projection_model",
    "tokenizer", "tokenizer_2", "scheduler", "feature_extractor",
)


# --------------------------------------------------------------------------------------------
# Where the model comes from
# --------------------------------------------------------------------------------------------
def _looks_like_path(model_id: str) -> bool:
    """Hub ids read ``owner/name``; anything else is meant as a folder."""
    return model_id.startswith((".", "/", "~")) or model_id.count("/") != 1 or "\\" in model_id


def check_checkpoint_folder(folder: Path) -> None:
    """Raise :class:`NotAnAudioLDM2CheckpointError` unless ``folder`` is laid out like ``cvssp/audioldm2``."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise NotAnAudioLDM2CheckpointError(
            f"{folder} has no model_index.json, so it is not a diffusers pipeline folder. Pass the folder that "
            "holds model_index.json and the unet/, vae/, ... subfolders (or one of: "
            f"{', '.join(settings.HUB_MODEL_IDS)})."
        )
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except json.JSONDecodeError as error:
        raise NotAnAudioLDM2CheckpointError(f"{index} is not valid JSON ({error}).") from None
    if class_name != "AudioLDM2Pipeline":
        raise NotAnAudioLDM2CheckpointError(
            f"{folder} holds a {class_name} checkpoint, not an AudioLDM2Pipeline one. This course needs "
            f"an AudioLDM 2 checkpoint: one of {', '.join(settings.HUB_MODEL_IDS)} or a folder laid out like them."
        )
    missing = [name for name in REQUIRED_SUBFOLDERS if not (folder / name).is_dir()]
    if missing:
        raise NotAnAudioLDM2CheckpointError(
            f"{folder} says it is an AudioLDM 2 checkpoint but lacks the subfolders {', '.join(missing)}: "
            "the download or copy is incomplete. Download it again, or rebuild it with python -m helpers.checkpoints."
        )


def _hub_is_reachable(timeout_s: float = 5.0) -> bool:
    """A quick check that the hub answers, so that no network fails in seconds, not after minutes of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _in_hub_cache(model_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "model_index.json"), str)


def resolve_checkpoint(model_id: str | os.PathLike | None = None) -> str:
    """Check that ``model_id`` can be loaded here and return it (a hub id or a folder path).

    ``None`` means ``$AUDIOLDM2_MODEL``, else ``cvssp/audioldm2``. The names ``tiny`` and ``full-size``
    (``-large``, ``-music``) mean a random-weights checkpoint built here, once, in the cache
    (see :mod:`helpers.checkpoints`). Nothing is downloaded: this fails
    at once, with what to do, when the checkpoint cannot be had.
    """
    model_id = str(model_id) if model_id is not None else settings.model_id()
    if model_id in settings.RANDOM_CHECKPOINTS:  # "tiny", "full-size", ...: built here, cached
        from helpers.checkpoints import cached_checkpoint

        return str(cached_checkpoint(*settings.RANDOM_CHECKPOINTS[model_id]))
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        check_checkpoint_folder(folder)
        return str(folder)
    if model_id not in settings.HUB_MODEL_IDS:
        what = "no such folder" if _looks_like_path(model_id) else "not an AudioLDM 2 checkpoint this course knows"
        raise UnknownCheckpointError(
            f"{model_id!r}: {what}. Use one of {', '.join(settings.HUB_MODEL_IDS)}, or a local folder laid out "
            "like them. For another AudioLDM 2 checkpoint on the hub, download it first "
            "(huggingface-cli download ID --local-dir DIR) and pass DIR. " + OFFLINE_HELP
        )
    if not _in_hub_cache(model_id) and not _hub_is_reachable():
        raise NoNetworkError(
            f"Cannot download {model_id}: the Hugging Face Hub ({HUB_HOST}) cannot be reached from here and the "
            "checkpoint is not in the local cache. " + OFFLINE_HELP
        )
    return model_id


# --------------------------------------------------------------------------------------------
# Device and precision
# --------------------------------------------------------------------------------------------
def default_device() -> str:
    """The best device torch sees: ``cuda``, else ``mps`` (Apple silicon), else ``cpu``."""
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def check_device(device: str | torch.device | None) -> torch.device:
    """Turn ``device`` (``None`` = the best available) into a ``torch.device`` that exists here."""
    device = torch.device(device if device is not None else default_device())
    if device.type == "cuda" and not torch.cuda.is_available():
        build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        raise NoGPUError(
            f"device={str(device)!r} was asked for, but torch sees no CUDA GPU (torch {torch.__version__} is "
            f"{build}). On Colab: Runtime > Change runtime type > a GPU. Elsewhere pass device='cpu' "
            "(every notebook runs there, more slowly, and says which steps are GPU lessons)."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise NoGPUError("device='mps' was asked for, but this machine has no Apple GPU. Pass device='cpu'.")
    return device


def check_dtype(torch_dtype: torch.dtype, device: torch.device) -> None:
    """Refuse a half precision that ``device`` would emulate: it would be slower than float32, not faster.

    float16 on any CPU, bfloat16 on a CPU without AVX512-BF16 or AMX (:mod:`helpers.precision` decides, and
    notebook 04 explains). A GPU is not refused anything: a T4 runs bfloat16, slowly, and notebook 04 shows why.
    """
    from helpers.precision import half_precision_runs_here, why_not

    if device.type == "cpu" and torch_dtype in (torch.float16, torch.bfloat16) \
            and not half_precision_runs_here(device, torch_dtype):
        raise HalfPrecisionOnCPUError(
            f"torch_dtype={torch_dtype} on this CPU: {why_not(device, torch_dtype)} Use torch_dtype=torch.float32 "
            "here, or run on a GPU (Colab: Runtime > Change runtime type)."
        )


# --------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------
def load_pipeline(
    model_id: str | os.PathLike | None = None,
    *,
    torch_dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    cpu_offload: bool = False,
):
    """Load an ``AudioLDM2Pipeline`` that runs on today's libraries, on ``device``, in ``torch_dtype``.

    ``model_id``: a hub id or a local folder; ``None`` reads ``$AUDIOLDM2_MODEL`` (default
    ``cvssp/audioldm2``). ``device``: ``None`` picks ``cuda``, else ``mps``, else ``cpu``.
    The only departure from a plain ``AudioLDM2Pipeline.from_pretrained`` is the language model,
    loaded as ``GPT2LMHeadModel`` (see this module's docstring).

    ``torch_dtype`` keeps the name most tutorials use; diffusers 0.42 and transformers 5 call the same
    argument ``dtype`` (the old name still works, with a FutureWarning), so that is what we pass on.

    ``cpu_offload=True``: the low-memory recipe. The weights stay in host memory and
    ``pipe.enable_model_cpu_offload(device=device)`` brings each model to the GPU as it runs (notebook 07), so
    half precision is allowed: the GPU computes, even though the weights are loaded on the CPU.
    """
    from diffusers import AudioLDM2Pipeline
    from transformers import GPT2LMHeadModel

    device = check_device(device)
    check_dtype(torch_dtype, device)  # the device that computes, also when the weights wait in host memory
    if cpu_offload and device.type == "cpu":
        raise NoGPUError("cpu_offload=True keeps the weights in host memory and moves each model to a GPU as it "
                         "runs; there is no GPU here, so there is nothing to offload to. Leave cpu_offload off.")
    model_id = resolve_checkpoint(model_id)
    try:
        language_model = GPT2LMHeadModel.from_pretrained(model_id, subfolder="language_model", dtype=torch_dtype)
        pipe = AudioLDM2Pipeline.from_pretrained(model_id, language_model=language_model, dtype=torch_dtype)
    except OSError as error:  # from_pretrained's error for a file it could neither find nor download
        if Path(model_id).is_dir():
            raise NotAnAudioLDM2CheckpointError(
                f"{model_id} is missing files ({error}). Copy or download the checkpoint again."
            ) from None
        raise NoNetworkError(f"Loading {model_id} failed while fetching files: {error}\n{OFFLINE_HELP}") from None
    pipe.set_progress_bar_config(disable=True)  # our timings print their own progress
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
        return pipe
    return pipe.to(device)


def hide_loading_bars() -> None:
    """No "Loading weights" or "Loading pipeline components" bars from here on; the hub's download bars stay.

    Loading an AudioLDM 2 pipeline draws a transformers bar per model and a diffusers bar over them: a dozen
    stacked bars (red lines in a saved notebook) for a step that takes seconds from disk. ``import helpers``
    calls this once. A download (the real checkpoint's first load: minutes, about 4 GB) is worth watching, so
    huggingface_hub's bars are left as they were (transformers' switch turns them off too). To see the loading
    bars again: ``transformers.utils.logging.enable_progress_bar()``, ``diffusers.utils.logging.enable_progress_bar()``.
    """
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    hub_bars_on = not are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
    if hub_bars_on:
        enable_progress_bars()
