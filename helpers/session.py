"""What every notebook does first: say what this machine is, load the pipeline, say which checkpoint it is.

Notebook 00 does these steps one by one and explains them; every later notebook calls :func:`setup`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from helpers import settings
from helpers.checkpoints import CheckpointInfo, describe_checkpoint
from helpers.environment import environment_report
from helpers.loading import default_device, load_pipeline


class Session(NamedTuple):
    """What :func:`setup` gives a notebook: ``pipe, device, checkpoint = h.setup(...)``."""

    pipe: object  # an AudioLDM2Pipeline
    device: torch.device
    checkpoint: CheckpointInfo


def setup(
    torch_dtype: torch.dtype = torch.float32,
    *,
    device: str | torch.device | None = None,
    model_id: str | None = None,
) -> Session:
    """Print the machine's report and the run's mode, load the pipeline, and print what was loaded.

    ``device``: ``None`` picks ``cuda``, else ``mps``, else ``cpu``. ``model_id``: ``None`` reads
    ``$AUDIOLDM2_MODEL`` (default ``cvssp/audioldm2``). Every timing needs the versions and device next to
    it, and every clip needs to say whether its weights are trained or random: hence the printing.
    """
    print(environment_report())
    print(settings.smoke_banner())
    device = torch.device(device if device is not None else default_device())
    pipe = load_pipeline(model_id, torch_dtype=torch_dtype, device=device)
    checkpoint = describe_checkpoint(pipe.name_or_path)
    print(f"model: {checkpoint.label}")
    print(f"device: {device}, dtype: {str(torch_dtype).removeprefix('torch.')}, "
          f"scheduler: {type(pipe.scheduler).__name__}")
    return Session(pipe, device, checkpoint)
