"""A job of many clips on disk: prompts read exactly, one run per folder, files that survive a crash (notebook 11).

The command ``python -m helpers.make_clips`` is built on these parts. What makes a long job safe to stop, crash,
resume and share:

* **Exact inputs.** Every value a prompts file gives is used as given (a seed of 0, an empty negative prompt)
  or refused with one line naming the file and line; a clip asked for twice is made once, and said so.
* **A name per clip** computed from what makes it (prompt, negative prompt, seed, length, the settings): the same
  clip always gets the same file, so a second run can tell what is already made.
* **One run per folder.** The run takes a lock on ``DIR/.lock`` (the operating system drops it when the process
  ends, however it ends); a second run on the same folder stops with one line naming the first.
* **Whole files or none.** Each WAV file and its record are written to a temporary file of their own, flushed to
  the disk (``fsync``), renamed (a rename is atomic), and the folder is flushed too. The record comes last and
  holds the WAV's size and SHA-256: a clip is finished only when both are on disk and agree. Anything else (a
  power cut's zeroed or truncated file, a blank record) is found when the next run starts, said in one line, and
  made again. The manifest is rebuilt from the records, one whole JSON object per line.

A crash, a ``kill -9`` or a power cut loses at most the clips being made.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from helpers.errors import BadJobError, JobBusyError, NonFiniteAudioError

RECORDS_DIR = ".records"  # one small JSON file per finished clip, inside the output folder
MANIFEST = "manifest.jsonl"
LOCK = ".lock"  # held by the run working in the folder; says who it is
COLUMNS = ("prompt", "negative_prompt", "seed", "length")
LARGEST_SEED = 2**63 - 1
FILE_HELP = ("Give a text file with one prompt per line, or a .csv (with a header line) or .jsonl file with a "
             "'prompt' and, if you like, 'negative_prompt', 'seed' and 'length' (seconds). A value left out "
             "(a missing key, null, an empty seed or length cell) takes the command's default; an empty "
             "negative_prompt means none.")


# --------------------------------------------------------------------------------------------
# The clips a prompts file asks for
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clip:
    """One clip to make: what the pipeline is given for it (``negative_prompt=None``: none)."""

    prompt: str
    negative_prompt: str | None
    seed: int
    audio_length_in_s: float

    def file_name(self, settings: dict) -> str:
        """A name that is the same on every run with the same clip and ``settings``, and differs otherwise."""
        made_of = json.dumps([asdict(self), settings], sort_keys=True)
        slug = re.sub(r"[^a-z0-9]+", "-", self.prompt.lower()).strip("-")[:40] or "clip"
        return f"{slug}-{hashlib.sha1(made_of.encode()).hexdigest()[:10]}.wav"


@dataclass
class PromptsFile:
    """What :func:`read_clips` found: each clip once, in the file's order, and lines worth saying."""

    clips: list[Clip]
    notes: list[str] = field(default_factory=list)  # repeated clips, columns the command does not read


def check_seed(value, where: str) -> int:
    """A seed as written: a whole number from 0 to 2**63 - 1 (``7``, ``"7"`` and ``7.0`` are 7; 7.5 is refused)."""
    if isinstance(value, str) and re.fullmatch(r"\s*\+?\d+\s*", value):
        seed = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        seed = value
    elif isinstance(value, float) and value.is_integer():
        seed = int(value)
    else:
        raise BadJobError(f"{where}: the seed must be a whole number from 0 to {LARGEST_SEED}, not {value!r}.")
    if not 0 <= seed <= LARGEST_SEED:
        raise BadJobError(f"{where}: the seed must be a whole number from 0 to {LARGEST_SEED}, not {value!r}.")
    return seed


def check_length(value, where: str) -> float:
    """A clip length in seconds as written: a finite number more than 0."""
    try:
        length = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        length = math.nan
    if isinstance(value, bool) or not (math.isfinite(length) and length > 0):
        raise BadJobError(f"{where}: the length must be a number of seconds more than 0, not {value!r}.")
    return length


def _given(value) -> bool:
    """A value a row gives: not a missing key, not JSON's null, not an empty CSV cell."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def _clip(row: dict, where: str, *, negative_prompt: str | None, seed: int, audio_length_in_s: float) -> Clip:
    prompt = row.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise BadJobError(f"{where}: the prompt must be text, not {prompt!r}.")
    if not (prompt or "").strip():
        raise BadJobError(f"{where}: the prompt is blank. Write one, or remove the line.")
    negative = row.get("negative_prompt", negative_prompt)  # present: as written ("" turns it off)
    if negative is not None and not isinstance(negative, str):
        raise BadJobError(f"{where}: the negative prompt must be text, not {negative!r}.")
    return Clip(
        prompt=prompt.strip(),
        negative_prompt=(negative or "").strip() or None,
        seed=check_seed(row["seed"], where) if _given(row.get("seed")) else seed,
        audio_length_in_s=check_length(row["length"], where) if _given(row.get("length")) else audio_length_in_s,
    )


def _rows(path: Path, text: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """(where, row) for every row of a prompts file, and the columns it has that the command does not read."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if "prompt" not in (reader.fieldnames or []):
            raise BadJobError(f"{path} has no 'prompt' column in its header line. {FILE_HELP}")
        rows = []
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if None in row:  # more cells than the header has columns
                raise BadJobError(f"{where}: more cells than the header line has columns (a comma inside a "
                                  'prompt needs the prompt in double quotes: "rain, then thunder").')
            rows.append((where, {key: value for key, value in row.items() if value is not None}))  # fewer cells
        return rows, [name for name in reader.fieldnames if name not in COLUMNS]
    if suffix == ".jsonl":
        rows, extra = [], set()
        for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: JSON text may hold U+2028
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                raise BadJobError(f"{path}, line {number}: not a JSON object. {FILE_HELP}")
            if "negative_prompt" in row and row["negative_prompt"] is None:
                del row["negative_prompt"]  # null: not given
            extra.update(key for key in row if key not in COLUMNS)
            rows.append((f"{path}, line {number}", row))
        return rows, sorted(extra)
    return ([(f"{path}, line {number}", {"prompt": line}) for number, line in enumerate(text.split("\n"), start=1)
             if line.strip()], [])  # in a text file, empty lines are only spacing (and "\r" is stripped with them)


def read_clips(path: str | os.PathLike, *, negative_prompt: str | None, seed: int,
               audio_length_in_s: float) -> PromptsFile:
    """The clips a prompts file asks for; the keyword arguments are the defaults for what a row leaves out.

    A value a row gives is used exactly as written or refused with one line naming the file and line: a seed of
    0 is 0, an empty negative prompt is none, a length of 0 is an error. A clip asked for twice is made once,
    and a note says which lines repeat which.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark is not a header
    except (OSError, UnicodeDecodeError) as error:
        raise BadJobError(f"Cannot read the prompts file {path}: {getattr(error, 'strerror', None) or error}. "
                          f"{FILE_HELP}") from None
    rows, ignored = _rows(path, text)
    first: dict[Clip, str] = {}
    repeats: list[str] = []
    for where, row in rows:
        clip = _clip(row, where, negative_prompt=negative_prompt, seed=seed, audio_length_in_s=audio_length_in_s)
        if clip in first:
            repeats.append(f"line {where.rsplit(' ', 1)[1]} (as line {first[clip].rsplit(' ', 1)[1]})")
        else:
            first[clip] = where
    if not first:
        raise BadJobError(f"{path} has no prompts. {FILE_HELP}")
    notes = []
    if repeats:
        shown = ", ".join(repeats[:5]) + (f" and {len(repeats) - 5} more" if len(repeats) > 5 else "")
        notes.append(f"{path}: {len(repeats)} line(s) ask for a clip an earlier line asks for (same prompt, negative "
                     f"prompt, seed and length), made once: {shown}.")
    if ignored:
        notes.append(f"{path}: column(s) not read: {', '.join(map(repr, ignored))} (the command reads "
                     f"{', '.join(COLUMNS)}).")
    return PromptsFile(clips=list(first), notes=notes)


def check_output_folder(out: str | os.PathLike) -> Path:
    """The output folder, checked before anything is made: it may exist (a resumed job), but not as a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadJobError(f"--out {out} is a file, not a folder. Give a folder (it is created if missing).")
    return out


# --------------------------------------------------------------------------------------------
# Named moments, for the fault tests
# --------------------------------------------------------------------------------------------
FAULT_ENV = "AUDIOLDM2_FAULT"
_passes: Counter = Counter()


def fault_point(name: str) -> None:
    """A named moment of a job. Nothing happens here unless the fault tests set ``AUDIOLDM2_FAULT``:

    * ``kill NAME N``: at the N-th pass through NAME this process kills itself with SIGKILL, as a crash or a
      power cut would stop it (no clean-up runs);
    * ``pause NAME N W R``: at the N-th pass it writes a byte to file descriptor W (the test's signal that the
      moment is reached) and waits for a byte on file descriptor R (the test's go-ahead).
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    _passes[name] += 1
    action, point, count, *fds = spec.split()
    if point != name or _passes[name] != int(count):
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "pause":
        os.write(int(fds[0]), b"!")
        os.read(int(fds[1]), 1)


# --------------------------------------------------------------------------------------------
# Files written whole, and flushed
# --------------------------------------------------------------------------------------------
def _flush_to_disk(fd: int) -> None:
    """fsync; on macOS, F_FULLFSYNC, since its fsync leaves the data in the drive's cache."""
    if sys.platform == "darwin":
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
            return
        except OSError:  # a file system without it (a network share): plain fsync
            pass
    os.fsync(fd)


def flush_folder(folder: Path) -> None:
    """Flush a folder's entries (new names, renames) to the disk; Windows has no such call, and needs none."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, kind: str = "file") -> None:
    """Write ``data`` to ``path`` so that a crash or a power cut leaves either the old file or the whole new one.

    The data goes to a temporary file with a name of its own (two writers never share one), is flushed to the
    disk, renamed over ``path`` (atomic), and the folder is flushed so that the rename is on the disk too.
    ``kind`` names the moments in between for :func:`fault_point` (``wav:half``, ``wav:written``, ...).
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes the file private; a plain open() would not
        with os.fdopen(fd, "wb") as file:
            file.write(data[: len(data) // 2])
            fault_point(f"{kind}:half")
            file.write(data[len(data) // 2:])
            file.flush()
            _flush_to_disk(file.fileno())
        fault_point(f"{kind}:written")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fault_point(f"{kind}:renamed")
    flush_folder(path.parent)


def _umask() -> int:
    mask = os.umask(0)  # reading it means setting it: put it back at once
    os.umask(mask)
    return mask


def remove_temporary_files(out: Path) -> int:
    """Delete what runs that were stopped left half-written; only the run holding the folder's lock may call it."""
    removed = 0
    for folder in (out, out / RECORDS_DIR):
        for part in folder.glob(".*.part"):
            part.unlink(missing_ok=True)
            removed += 1
    return removed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# One run per folder
# --------------------------------------------------------------------------------------------
def _try_lock(fd: int) -> bool:
    """Take the lock on an open file without waiting: True, or False when another process holds it.

    The operating system drops it when the process ends, however it ends (a crash, ``kill -9``), so a lock is
    never left behind; on NFS the server's lock manager does the same for a machine that stops.
    """
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, 1 << 30, os.SEEK_SET)  # lock a byte far past the text, which others must still read
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import errno
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def read_lock(out: Path) -> dict:
    """Who holds (or last held) the folder's lock: run, host, pid, started, command; {} if it cannot be read."""
    try:
        holder = json.loads((out / LOCK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict) -> str:
    """The run a lock file names, in words."""
    if not holder:
        return "another run (its details are not written yet)"
    return (f"process {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
            f"{holder.get('command')}")


def _open_locked(out: Path) -> tuple[int, bool]:
    """Open ``out/.lock`` and try to lock it: ``(fd, locked)``.

    A run that ends leaving an empty folder it made deletes the lock file while it still holds it; a run that
    opened that file a moment before would then lock a file no longer in the folder. So the locked file must
    still be the one at the path, or it is opened again.
    """
    path = out / LOCK
    for _ in range(100):  # once more is the rule; a hundred times would mean something keeps deleting the folder
        try:
            out.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder went between the two calls: make it again
            continue
        except OSError as error:
            raise BadJobError(f"Cannot write in {out}: {error.strerror or error}. Give a folder you can write in."
                              ) from None
        try:
            locked = _try_lock(fd)
            if not locked or os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd, locked
        except FileNotFoundError:
            pass
        except OSError as error:
            os.close(fd)
            raise BadJobError(f"Cannot lock {path}: {error.strerror or error}. The folder must be on a file system "
                              "with file locks (a local disk; NFS, Lustre mounted with flock, ...).") from None
        os.close(fd)
    raise BadJobError(f"Cannot lock {path}: it keeps disappearing. Is another program deleting {out}?")


@contextlib.contextmanager
def lock_folder(out: Path, *, command: str = "") -> Iterator[dict]:
    """Hold ``out``'s lock for the block, or raise :class:`~helpers.errors.JobBusyError` naming the run that holds it.

    Yields what it wrote in ``out/.lock``: a new run id, this host, pid, start time and ``command``. Every process
    of the run reads that file back to check that it sees the same folder (on several machines: a shared one).
    A folder this call made is removed again if the run leaves nothing else in it (a run stopped by a check).
    """
    created = not out.exists()
    fd, locked = _open_locked(out)
    try:
        if not locked:
            raise JobBusyError(f"{out} is in use by {describe_holder(read_lock(out))}. Two runs on one folder would "
                               "make the same clips twice: wait for that run to end (or stop it), then run this "
                               "again; or give another --out.")
        holder = {"run": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": command}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        _flush_to_disk(fd)
        flush_folder(out)
        fault_point("job:locked")
        yield holder
    finally:
        if locked and created and [entry.name for entry in out.iterdir()] == [LOCK]:
            with contextlib.suppress(OSError):
                (out / LOCK).unlink()  # still held: a run that opened it meanwhile sees it gone, and opens anew
                out.rmdir()
        os.close(fd)  # drops the lock


# --------------------------------------------------------------------------------------------
# Clips on disk: saved whole, checked when read
# --------------------------------------------------------------------------------------------
@dataclass
class FolderCheck:
    """The clips in a folder: ``finished`` (file name -> record) are whole; ``damaged`` (file name -> what is
    wrong) have a record that is not whole, or a WAV file that is not the one their record describes."""

    finished: dict[str, dict]
    damaged: dict[str, str]


def _check_one(out: Path, record_path: Path, *, full: bool) -> tuple[dict | None, str | None]:
    name = record_path.name.removesuffix(".json")
    try:
        data = record_path.read_bytes()
    except OSError as error:
        return None, f"its record cannot be read ({error.strerror})"
    if not data.strip():
        return None, "its record is blank"
    try:
        record = json.loads(data)
    except ValueError:
        return None, "its record is not whole JSON"
    if not isinstance(record, dict) or record.get("file") != name:
        return None, "its record is for another file"
    wav = out / name
    if not wav.is_file():
        return None, "its WAV file is missing"
    if "sha256" not in record:  # a record from before this check: the WAV's header must match the length
        return (record, None) if _wav_has_frames(wav, record.get("length_s")) else (None, "its WAV file is cut short")
    size = wav.stat().st_size
    if size != record.get("bytes"):
        return None, f"its WAV file has {size} bytes, its record says {record.get('bytes')}"
    if full and _sha256(wav) != record["sha256"]:
        return None, "its WAV file's content differs from its record (zeroed or overwritten)"
    return record, None


def _wav_has_frames(wav: Path, length_s) -> bool:
    import soundfile

    try:
        info = soundfile.info(str(wav))
    except Exception:  # noqa: BLE001 - libsndfile's errors have no common class
        return False
    return isinstance(length_s, (int, float)) and abs(info.frames - int(length_s * info.samplerate)) <= 1


def check_clips(out: Path, *, full: bool = True) -> FolderCheck:
    """Read every record in ``out`` and check its WAV file: by size and SHA-256 (``full``), or by size only.

    A clip counts as finished only when its record is whole JSON for its file and the WAV file is the one the
    record describes; anything else (a blank record, a WAV zeroed or cut short by a power cut) is ``damaged``.
    """
    result = FolderCheck(finished={}, damaged={})
    records = out / RECORDS_DIR
    if not records.is_dir():
        return result
    for record_path in sorted(records.glob("*.wav.json")):
        record, problem = _check_one(out, record_path, full=full)
        name = record_path.name.removesuffix(".json")
        if record is not None:
            result.finished[name] = record
        else:
            result.damaged[name] = problem
    return result


def finished(out: Path) -> set[str]:
    """The file names of the clips already made, whole (see :func:`check_clips`)."""
    return set(check_clips(out).finished)


def save_clip(out: Path, name: str, audio, sampling_rate: int, record: dict) -> dict:
    """The clip's WAV file, then its record (with the WAV's size and SHA-256): a record exists only for a whole WAV.

    A clip with NaN or infinite samples (float16 overflows at 65504) is not saved: this raises
    :class:`~helpers.errors.NonFiniteAudioError`, the clip stays unmade, and the next run tries it again.
    Returns the record as written.
    """
    import soundfile

    from helpers.listening import as_mono, not_finite

    if problem := not_finite(audio):
        raise NonFiniteAudioError(f"{name} ({record.get('prompt')!r}) not saved: the clip is {problem}")
    buffer = io.BytesIO()
    soundfile.write(buffer, as_mono(audio), sampling_rate, subtype="PCM_16", format="WAV")
    data = buffer.getvalue()
    record = {**record, "file": name, "frames": int(as_mono(audio).size), "bytes": len(data),
              "sha256": hashlib.sha256(data).hexdigest()}
    write_atomically(out / name, data, kind="wav")
    (out / RECORDS_DIR).mkdir(exist_ok=True)
    write_atomically(out / RECORDS_DIR / f"{name}.json", json.dumps(record).encode(), kind="record")
    fault_point("clip:saved")
    return record


def write_manifest(out: Path, *, full: bool = False) -> int:
    """Rebuild ``manifest.jsonl`` from every whole record, sorted by file name, one JSON object per line, written
    atomically; returns its clip count. ``full=False`` checks the WAV files by size (they were checked in full
    when the run started, or written by it)."""
    check = check_clips(out, full=full)
    lines = [json.dumps(check.finished[name]) + "\n" for name in sorted(check.finished)]
    write_atomically(out / MANIFEST, "".join(lines).encode(), kind="manifest")
    return len(lines)


def read_manifest(out: Path) -> list[dict]:
    """The manifest's records, one per clip."""
    return [json.loads(line) for line in (Path(out) / MANIFEST).read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------------------------
# A run's start in the folder
# --------------------------------------------------------------------------------------------
@dataclass
class JobStart:
    """What the run holding the folder found there when it started."""

    holder: dict  # what it wrote in .lock
    check: FolderCheck
    removed: int  # half-written temporary files of stopped runs, deleted


@contextlib.contextmanager
def start_job(out: Path, *, command: str = "") -> Iterator[JobStart]:
    """Hold the folder for a run: its lock, the half-written files of stopped runs removed, every clip checked.

    Only then is it safe to decide what to make: no other run can write here until the block ends.
    """
    with lock_folder(out, command=command) as holder:
        removed = remove_temporary_files(out)
        yield JobStart(holder=holder, check=check_clips(out, full=True), removed=removed)


def damage_line(check: FolderCheck, wanted: set[str]) -> str | None:
    """One line on the damaged clips (None if there are none): which, why, and which are made again."""
    if not check.damaged:
        return None
    remade = sum(name in wanted for name in check.damaged)
    shown = "; ".join(f"{name}: {why}" for name, why in list(check.damaged.items())[:3])
    more = f"; and {len(check.damaged) - 3} more" if len(check.damaged) > 3 else ""
    others = len(check.damaged) - remade
    fate = ("made again" if not others else f"{remade} made again (this job asks for them), {others} left out of "
            "the manifest (this job does not)")
    return f"{len(check.damaged)} clip(s) on disk are damaged ({shown}{more}): {fate}."
