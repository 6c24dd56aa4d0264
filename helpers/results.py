"""The results log: every measurement the course makes, one JSON object per line.

Why JSON Lines: each notebook only ever *appends* one line per measurement, so a crash mid-write can
damage at most that last line, never an earlier row. Reading skips a damaged line with a clear warning
and keeps the rest; the course runner (``helpers.run_course``) reads it back as a table for its summary.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch

from helpers import settings
from helpers.memory import GIB, PeakMemory
from helpers.stages import StageTimes
from helpers.timing import Timing

COLUMNS = (
    "notebook", "configuration", "device_name", "dtype", "steps", "audio_seconds", "median_s", "spread_s",
    "first_call_s", "realtime_factor", "peak_memory_gib", "peak_allocated_gib", "fixed_s", "per_step_s", "stages_s",
    "model_id", "checkpoint_kind", "smoke", "versions", "recorded_at",
)  # the keys of every row record() writes, in order


class ResultsLogWarning(UserWarning):
    """A line of the results log could not be read and was skipped."""


def device_name(device: torch.device | str) -> str:
    """A readable name for the device a measurement ran on, e.g. 'NVIDIA H100 80GB HBM3' or 'CPU (2 cores)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def library_versions() -> dict[str, str]:
    """The versions that decide a speed figure."""
    import diffusers
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda or "none"}


def record(
    notebook: str,
    configuration: str,
    timing: Timing,
    memory: PeakMemory | None,
    *,
    pipe,
    steps: int,
    stages: StageTimes | None = None,
    path: str | os.PathLike | None = None,
    extra: dict | None = None,
) -> dict:
    """Append one measurement to the results log (``$AUDIOLDM2_RESULTS``) and return the row written.

    ``stages``, where the generation was split (:mod:`helpers.stages`), adds the fixed part, the cost of one step
    and each stage's seconds (from one extra generation with hooks, so a guide beside ``median_s``). ``extra``: more
    keys for the same line (``python -m helpers.bench`` adds what section and baseline a row belongs to).
    """
    from helpers.checkpoints import describe_checkpoint

    model_id = pipe.name_or_path or "unknown"
    row = {
        "notebook": notebook,
        "configuration": configuration,
        "device_name": device_name(timing.device),
        "dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "steps": steps,
        "audio_seconds": timing.audio_seconds,
        "median_s": timing.median_s,
        "spread_s": timing.spread_s,
        "first_call_s": timing.warmup_s[0] if timing.warmup_s else None,
        "realtime_factor": timing.realtime_factor,
        "peak_memory_gib": memory.peak_gib if memory else None,
        "peak_allocated_gib": memory.gpu_allocated / GIB if memory and memory.gpu_allocated is not None else None,
        "fixed_s": stages.fixed_s if stages else None,
        "per_step_s": stages.per_step_s if stages else None,
        "stages_s": {**stages.seconds, "everything else": stages.other_s} if stages else None,
        "model_id": model_id,
        "checkpoint_kind": describe_checkpoint(model_id).kind,
        "smoke": settings.smoke_mode(),
        "versions": library_versions(),
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    append_row(row, path)
    return row


def append_row(row: dict, path: str | os.PathLike | None = None) -> None:
    """Append ``row`` as one line. A damaged last line (no newline) is closed first, never glued to."""
    path = Path(path) if path is not None else settings.results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as log:
        log.seek(0, os.SEEK_END)
        if log.tell() > 0:
            log.seek(-1, os.SEEK_END)
            if log.read(1) != b"\n":
                log.write(b"\n")
        log.write((json.dumps(row) + "\n").encode())
        log.flush()
        os.fsync(log.fileno())


def read_rows(path: str | os.PathLike | None = None) -> list[dict]:
    """Every readable row of the log, in order. Damaged lines are skipped with one warning naming them."""
    path = Path(path) if path is not None else settings.results_path()
    if not path.exists():
        return []
    rows, damaged = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            damaged.append(number)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            damaged.append(number)
    if damaged:
        warnings.warn(
            f"{path}: skipped {len(damaged)} damaged line(s) ({', '.join(map(str, damaged[:10]))}), probably a "
            f"write cut short; the other {len(rows)} rows are intact. Delete those lines to silence this.",
            ResultsLogWarning, stacklevel=2,
        )
    return rows


def read_table(path: str | os.PathLike | None = None):
    """The log as a pandas DataFrame, one row per measurement, in the order they were made."""
    import pandas as pd

    rows = read_rows(path)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    if "versions" in table:
        table["versions"] = table["versions"].map(
            lambda v: ", ".join(f"{k} {x}" for k, x in v.items()) if isinstance(v, dict) else v)
    return table


def markdown_table(table, columns: list[str], float_format: str = "{:.3g}") -> str:
    """A DataFrame as a GitHub markdown table (no extra dependency)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if value != value else float_format.format(value)  # NaN: a measurement not made
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(row.get(column)) for column in columns) + " |")
    return "\n".join(lines)
