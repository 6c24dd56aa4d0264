"""A job of many clips: prompts read from a file, a stable file name per clip, and a manifest (notebook 11).

What makes a long job safe to stop and start again: every clip gets a name computed from what makes it (prompt,
negative prompt, seed, length and the generation settings), each WAV file and its record are written to a
temporary name and renamed (a rename is atomic: a file is either whole or absent), and the manifest is rebuilt
from the records. A second run skips every clip whose file and record exist; a crash or Ctrl-C loses at most
the clips being generated.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from helpers.errors import BadJobError

RECORDS_DIR = ".records"  # one small JSON file per finished clip, inside the output folder
MANIFEST = "manifest.jsonl"
FILE_HELP = ("Give a text file with one prompt per line, or a .csv (with a header) or .jsonl file with a 'prompt' "
             "field and, if you like, 'negative_prompt', 'seed' and 'length'.")


@dataclass(frozen=True)
class Clip:
    """One clip to make: what the pipeline is given for it."""

    prompt: str
    negative_prompt: str | None
    seed: int
    audio_length_in_s: float

    def file_name(self, settings: dict) -> str:
        """A name that is the same on every run with the same clip and ``settings``, and differs otherwise."""
        made_of = json.dumps([asdict(self), settings], sort_keys=True)
        slug = re.sub(r"[^a-z0-9]+", "-", self.prompt.lower()).strip("-")[:40] or "clip"
        return f"{slug}-{hashlib.sha1(made_of.encode()).hexdigest()[:10]}.wav"


def _number(value, kind, where: str):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise BadJobError(f"{where}: {value!r} is not a number.") from None
    if kind is float and not number > 0:
        raise BadJobError(f"{where}: the length must be more than 0 seconds, not {value!r}.")
    return number


def read_clips(path: str | os.PathLike, *, negative_prompt: str | None, seed: int,
               audio_length_in_s: float) -> list[Clip]:
    """The clips a prompts file asks for; the keyword arguments are the defaults for what a line leaves out."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadJobError(f"Cannot read the prompts file {path}: {getattr(error, 'strerror', None) or error}. "
                          f"{FILE_HELP}") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if "prompt" not in (reader.fieldnames or []):
            raise BadJobError(f"{path} has no 'prompt' column in its header line. {FILE_HELP}")
        rows = [(f"{path}, line {number}", row) for number, row in enumerate(reader, start=2)]
    elif path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((f"{path}, line {number}", dict(json.loads(line))))
                except (ValueError, TypeError):
                    raise BadJobError(f"{path}, line {number}: not a JSON object. {FILE_HELP}") from None
    else:
        rows = [(f"{path}, line {number}", {"prompt": line}) for number, line in enumerate(text.splitlines(), start=1)
                if line.strip()]  # in a text file, empty lines are only spacing
    clips = []
    for where, row in rows:
        prompt = (row.get("prompt") or "").strip()
        if not prompt:
            raise BadJobError(f"{where}: the prompt is blank. Write one, or remove the line.")
        clips.append(Clip(
            prompt=prompt,
            negative_prompt=(row.get("negative_prompt") or negative_prompt or None),
            seed=_number(row.get("seed") or seed, int, where),
            audio_length_in_s=_number(row.get("length") or audio_length_in_s, float, where),
        ))
    if not clips:
        raise BadJobError(f"{path} has no prompts. {FILE_HELP}")
    return clips


def check_output_folder(out: str | os.PathLike) -> Path:
    """The output folder, checked before anything is made: it may exist (a resumed job), but not as a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadJobError(f"--out {out} is a file, not a folder. Give a folder (it is created if missing).")
    return out


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file, or the whole new one."""
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)


def finished(out: Path) -> set[str]:
    """The file names of the clips already made: their WAV file and their record both exist."""
    records = out / RECORDS_DIR
    if not records.is_dir():
        return set()
    return {record.stem for record in records.glob("*.wav.json") if (out / record.stem).is_file()}


def save_clip(out: Path, name: str, audio, sampling_rate: int, record: dict) -> None:
    """The clip's WAV file, then its record: a record exists only for a whole WAV file."""
    import io

    import soundfile

    from helpers.listening import as_mono

    buffer = io.BytesIO()
    soundfile.write(buffer, as_mono(audio), sampling_rate, subtype="PCM_16", format="WAV")
    write_atomically(out / name, buffer.getvalue())
    (out / RECORDS_DIR).mkdir(exist_ok=True)
    write_atomically(out / RECORDS_DIR / f"{name}.json", json.dumps(record).encode())


def write_manifest(out: Path) -> int:
    """Rebuild ``manifest.jsonl`` from every record (sorted by file name, atomically); returns its clip count."""
    names = sorted(finished(out))
    lines = [(out / RECORDS_DIR / f"{name}.json").read_text() for name in names]
    write_atomically(out / MANIFEST, "".join(line.strip() + "\n" for line in lines).encode())
    return len(lines)
