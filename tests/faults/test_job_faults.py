"""Fault injection for the command's files (``python -m helpers.make_clips`` and :mod:`helpers.jobs`).

Most faults hit the file layer directly: a fake job (the command's steps in the folder, with a fake pipeline that
makes a known clip from each seed) runs in forked processes, which start at once, and which kill themselves with
SIGKILL at a named moment (``AUDIOLDM2_FAULT``) picked at random from a fixed seed. Between runs, files are cut
short or zeroed as a power cut leaves them. A few runs of the real command on the tiny checkpoint do the same end
to end. After every completed run: each clip exactly once, each WAV file whole at its full length and the very
clip that was asked for, the manifest whole JSON lines listing each clip once, nothing finished made again.
No test sleeps: a paused run says it reached its moment through a pipe.
"""

import hashlib
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import soundfile

from helpers import jobs
from helpers.errors import JobBusyError, NonFiniteAudioError
from helpers.jobs import MANIFEST, RECORDS_DIR, Clip

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork and SIGKILL: POSIX only")
ROOT = Path(__file__).resolve().parents[2]
SEED = 19  # every random choice below comes from it: a failure reruns the same way
SR = 16_000
RECIPE = {"pipeline": "fake"}
CLIP_POINTS = ["batch:made", "wav:half", "wav:written", "wav:renamed", "record:half", "record:written",
               "record:renamed", "clip:saved"]  # passed once per clip
RUN_POINTS = ["job:locked", "manifest:half", "manifest:written", "manifest:renamed"]  # passed once per run
CLIPS = [Clip(f"sound number {i}", None if i % 2 else "noise", i, 0.25 * (1 + i % 3)) for i in range(5)]


# --------------------------------------------------------------------------------------------
# A fake job, run in forked processes
# --------------------------------------------------------------------------------------------
def fake_audio(clip: Clip) -> np.ndarray:
    return np.random.default_rng(clip.seed).uniform(-0.5, 0.5, int(clip.audio_length_in_s * SR)).astype(np.float32)


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SR, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def fake_job(out: Path, clips: list[Clip], *, log: Path | None = None, nan: tuple[int, ...] = ()) -> None:
    """What the command's main process does in the folder, with a fake pipeline: lock, check, make, manifest."""
    with jobs.start_job(out, command="fake job") as start:
        for clip in clips:
            name = clip.file_name(RECIPE)
            if name in start.check.finished:
                continue
            audio = fake_audio(clip)
            if clip.seed in nan:
                audio[::7] = np.nan
            jobs.fault_point("batch:made")
            try:
                jobs.save_clip(out, name, audio, SR, {"prompt": clip.prompt, "seed": clip.seed,
                                                      "length_s": clip.audio_length_in_s})
            except NonFiniteAudioError:
                continue
            if log:
                with open(log, "a") as file:
                    file.write(name + "\n")
        jobs.write_manifest(out)


def start_child(work, *, fault: str | None = None, said: Path | None = None) -> int:
    """Fork a process that runs ``work()`` (it has every module loaded already: no start-up cost); its pid.

    It exits 0 when ``work`` ends, 3 when another run holds the folder (the message goes to ``said``), 1 on any
    other error; ``fault`` is its ``AUDIOLDM2_FAULT``.
    """
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.environ.pop(jobs.FAULT_ENV, None)
        if fault:
            os.environ[jobs.FAULT_ENV] = fault
        jobs._passes.clear()
        work()
        code = 0
    except JobBusyError as error:
        if said:
            said.write_text(str(error))
        code = 3
    except BaseException:  # noqa: BLE001 - the parent sees the code, the log shows the traceback
        traceback.print_exc()
    finally:
        os._exit(code)


def wait_child(pid: int) -> int:
    """The child's exit code, or minus the signal that ended it (-9: SIGKILL)."""
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def in_child(work, **kwargs) -> int:
    return wait_child(start_child(work, **kwargs))


# --------------------------------------------------------------------------------------------
# Power cuts, and the checks after each run
# --------------------------------------------------------------------------------------------
DAMAGE = ["cut wav", "zero wav", "drop wav", "blank record", "cut record", "zero record", "cut manifest",
          "stray part"]


def power_cut(out: Path, rng: random.Random, what: str | None = None, *, among: list[str] = DAMAGE) -> str:
    """Leave one file as a power cut can (cut short, zeroed, blank, missing) or a stray temporary file: ``what``,
    or one of ``among`` picked at random from those the folder has files for."""
    wavs = sorted(out.glob("*.wav"))
    records = sorted((out / RECORDS_DIR).glob("*.wav.json"))
    possible = [kind for kind in among if (wavs or "wav" not in kind) and (records or "record" not in kind)
                and ((out / MANIFEST).exists() or "manifest" not in kind)]
    what = what or rng.choice(possible or ["stray part"])
    path = {"wav": rng.choice(wavs) if wavs else None, "rec": rng.choice(records) if records else None,
            "man": out / MANIFEST}.get(what.split()[1][:3])
    if what == "stray part":
        out.mkdir(exist_ok=True)
        (out / f".{CLIPS[0].file_name(RECIPE)}.x1y2z3.part").write_bytes(os.urandom(100))
    elif what == "drop wav":
        path.unlink()
    elif what.startswith("cut"):
        os.truncate(path, rng.randrange(path.stat().st_size))
    elif what.startswith("zero"):
        path.write_bytes(bytes(path.stat().st_size))
    else:  # blank
        path.write_bytes(b"")
    return what


def whole_clips(out: Path) -> dict[str, int]:
    """The finished clips that pass the full check, with their WAV file's inode (a remade file gets a new one)."""
    return {name: (out / name).stat().st_ino for name in jobs.check_clips(out).finished}


def check_job(out: Path, clips: list[Clip], tally, *, before: dict[str, int] | None = None) -> None:
    """Every clip exactly once, whole and right; the manifest whole and complete; ``before``'s clips not remade."""
    expected = {clip.file_name(RECIPE): clip for clip in clips}
    lines = (out / MANIFEST).read_text().splitlines()
    records = [json.loads(line) for line in lines]  # a blank or cut line would raise here
    assert all(isinstance(record, dict) for record in records)
    assert sorted(record["file"] for record in records) == sorted(expected)  # each clip once, none missing
    for record in records:
        clip, data = expected[record["file"]], (out / record["file"]).read_bytes()
        assert data == wav_bytes(fake_audio(clip))  # the very clip: nothing lost, nothing bent
        assert (record["bytes"], record["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert soundfile.info(str(out / record["file"])).frames == record["frames"] == len(fake_audio(clip))
        assert (record["prompt"], record["seed"]) == (clip.prompt, clip.seed)
    assert sorted(path.name for path in out.glob("*.wav")) == sorted(expected)
    assert not list(out.rglob("*.part"))
    assert jobs.check_clips(out).damaged == {}
    for name, inode in (before or {}).items():
        assert (out / name).stat().st_ino == inode, f"{name} was whole, and was made again"
    tally["clips"] += len(expected)


# --------------------------------------------------------------------------------------------
# The file layer
# --------------------------------------------------------------------------------------------
def test_runs_killed_at_random_moments_and_power_cuts_lose_nothing(tmp_path, tally):
    rng = random.Random(SEED)
    for round_ in range(40):
        out = tmp_path / f"round-{round_}"
        for _ in range(rng.randint(1, 3)):  # killed one to three times, then resumed
            point = rng.choice(CLIP_POINTS + RUN_POINTS)
            count = rng.randint(1, len(CLIPS)) if point in CLIP_POINTS else 1
            before = whole_clips(out) if out.exists() else {}
            code = in_child(lambda: fake_job(out, CLIPS), fault=f"kill {point} {count}")
            assert code in (0, -signal.SIGKILL), f"round {round_}: kill at {point} #{count}: exit {code}"
            tally["kill -9"] += code == -signal.SIGKILL
            assert all((out / name).stat().st_ino == inode for name, inode in before.items()
                       if name in whole_clips(out))
            if rng.random() < 0.5:
                power_cut(out, rng)
                tally["power-cut damage"] += 1
        before = whole_clips(out)
        assert in_child(lambda: fake_job(out, CLIPS)) == 0
        check_job(out, CLIPS, tally, before=before)
        if rng.random() < 0.3:  # a power cut after the job ended, and the job run again
            power_cut(out, rng)
            tally["power-cut damage"] += 1
            before = whole_clips(out)
            assert in_child(lambda: fake_job(out, CLIPS)) == 0
            check_job(out, CLIPS, tally, before=before)


@pytest.mark.parametrize("what", DAMAGE)
def test_each_kind_of_damage_is_found_said_in_one_line_and_made_again(tmp_path, tally, what):
    out = tmp_path / "out"
    fake_job(out, CLIPS)
    rng = random.Random(f"{SEED}-{what}")
    power_cut(out, rng, what)
    tally["power-cut damage"] += 1
    check = jobs.check_clips(out)
    if what in ("cut manifest", "stray part"):
        assert check.damaged == {}  # the manifest is rebuilt and temporary files removed: no clip is lost
    else:
        [(name, why)] = check.damaged.items()
        line = jobs.damage_line(check, {clip.file_name(RECIPE) for clip in CLIPS})
        assert "\n" not in line and name in line and why in line and "made again" in line
    fake_job(out, CLIPS)
    check_job(out, CLIPS, tally)


def test_a_second_run_on_a_folder_in_use_stops_with_one_line_naming_the_first(tmp_path, tally):
    out, said = tmp_path / "out", tmp_path / "said.txt"
    reached_r, reached_w = os.pipe()
    go_r, go_w = os.pipe()
    first = start_child(lambda: fake_job(out, CLIPS), fault=f"pause job:locked 1 {reached_w} {go_r}")
    os.close(reached_w)
    os.close(go_r)
    assert os.read(reached_r, 1) == b"!"  # the first run holds the folder (b"" would mean it died)
    listing = sorted(path.relative_to(out) for path in out.rglob("*"))
    assert in_child(lambda: fake_job(out, CLIPS), said=said) == 3
    message = said.read_text()
    assert f"process {first} on {socket.gethostname()}" in message and "\n" not in message
    assert sorted(path.relative_to(out) for path in out.rglob("*")) == listing  # the second wrote nothing
    os.write(go_w, b"!")
    assert wait_child(first) == 0
    check_job(out, CLIPS, tally)
    tally["concurrent run"] += 1


def test_runs_racing_for_one_folder_make_each_clip_exactly_once(tmp_path, tally):
    for race in range(6):
        out, log = tmp_path / f"race-{race}", tmp_path / f"saves-{race}.txt"
        pids = [start_child(lambda: fake_job(out, CLIPS, log=log)) for _ in range(3)]
        codes = [wait_child(pid) for pid in pids]
        assert set(codes) <= {0, 3} and 0 in codes  # each made clips, or stopped because another held the folder
        saves = log.read_text().split()
        assert sorted(saves) == sorted(clip.file_name(RECIPE) for clip in CLIPS)  # each clip saved once in all
        check_job(out, CLIPS, tally)
        tally["concurrent run"] += 2


def test_a_clip_that_is_not_finite_is_not_saved_and_is_made_by_the_next_run(tmp_path, tally):
    out = tmp_path / "out"
    fake_job(out, CLIPS, nan=(2,))
    tally["non-finite clip"] += 1
    nan_name = CLIPS[2].file_name(RECIPE)
    assert nan_name not in jobs.finished(out) and not (out / nan_name).exists()
    assert nan_name not in (out / MANIFEST).read_text()
    before = whole_clips(out)
    fake_job(out, CLIPS)
    check_job(out, CLIPS, tally, before=before)
    with pytest.raises(NonFiniteAudioError, match="not saved: the clip is not finite: 0 NaN and 1 infinite"):
        jobs.save_clip(out, "x.wav", np.array([0.0, np.inf], dtype=np.float32), SR, {"prompt": "x"})


# --------------------------------------------------------------------------------------------
# Rows: explicit values exactly, bad values in one line, repeats made once
# --------------------------------------------------------------------------------------------
DEFAULTS = {"negative_prompt": "Low quality.", "seed": 7, "audio_length_in_s": 10.24}


@pytest.mark.parametrize("name, content, clips", [
    ("zero.jsonl", '{"prompt": "a", "seed": 0}\n{"prompt": "a", "seed": 7}\n',
     [Clip("a", "Low quality.", 0, 10.24), Clip("a", "Low quality.", 7, 10.24)]),
    ("zero.csv", "prompt,seed\na,0\na,7\n", [Clip("a", "Low quality.", 0, 10.24), Clip("a", "Low quality.", 7, 10.24)]),
    ("off.jsonl", '{"prompt": "a", "negative_prompt": ""}\n{"prompt": "b", "negative_prompt": null}\n',
     [Clip("a", None, 7, 10.24), Clip("b", "Low quality.", 7, 10.24)]),
    ("off.csv", "prompt,negative_prompt,seed,length\na,,,\nb,hiss,3,2.5\n",
     [Clip("a", None, 7, 10.24), Clip("b", "hiss", 3, 2.5)]),
    ("numbers.jsonl", '{"prompt": "a", "seed": "12", "length": "1.5"}\n{"prompt": "b", "seed": 3.0, "length": 2}\n',
     [Clip("a", "Low quality.", 12, 1.5), Clip("b", "Low quality.", 3, 2.0)]),
    ("bom.csv", "\ufeffprompt,seed\na,1\n", [Clip("a", "Low quality.", 1, 10.24)]),
])
def test_a_value_a_row_gives_is_used_exactly(tmp_path, tally, name, content, clips):
    (tmp_path / name).write_text(content, encoding="utf-8")
    result = jobs.read_clips(tmp_path / name, **DEFAULTS)
    assert result.clips == clips and result.notes == []
    tally["bad row"] += 1


@pytest.mark.parametrize("name, content, message", [
    ("len0.csv", "prompt,length\na,2\nb,0\n", "len0.csv, line 3: the length must be a number of seconds more than 0, not '0'"),
    ("lenneg.jsonl", '{"prompt": "a", "length": -1}\n', "lenneg.jsonl, line 1: the length must be"),
    ("lennan.jsonl", '{"prompt": "a", "length": NaN}\n', "line 1: the length must be"),
    ("lenword.csv", "prompt,length\na,long\n", "line 2: the length must be a number of seconds more than 0, not 'long'"),
    ("seedword.csv", "prompt,seed\na,seven\n", "line 2: the seed must be a whole number from 0 to"),
    ("seedhalf.jsonl", '{"prompt": "a", "seed": 7.5}\n', "line 1: the seed must be a whole number"),
    ("seedneg.jsonl", '{"prompt": "a", "seed": -1}\n', "line 1: the seed must be a whole number"),
    ("seedbool.jsonl", '{"prompt": "a", "seed": true}\n', "line 1: the seed must be a whole number"),
    ("negnum.jsonl", '{"prompt": "a", "negative_prompt": 3}\n', "line 1: the negative prompt must be text"),
    ("promptnum.jsonl", '{"prompt": 3}\n', "line 1: the prompt must be text"),
    ("blank.csv", "prompt\na\n\n \n", "line 4: the prompt is blank"),
    ("cells.csv", "prompt,seed\nrain, then thunder,3\n", "line 2: more cells than the header line has columns"),
    ("broken.jsonl", '{"prompt": "a"}\n{"prompt": \n', "line 2: not a JSON object"),
])
def test_a_bad_value_is_refused_in_one_line_naming_the_file_and_line(tmp_path, tally, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(jobs.BadJobError) as error:
        jobs.read_clips(tmp_path / name, **DEFAULTS)
    assert message in str(error.value) and str(error.value).startswith(str(tmp_path / name))
    tally["bad row"] += 1


def test_repeated_clips_are_made_once_and_said_in_one_line(tmp_path, tally):
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "a", "seed": 7}\n'
                                      '{"prompt": "a", "seed": 8}\n{"prompt": "b", "extra": 1}\n')
    result = jobs.read_clips(tmp_path / "p.jsonl", **DEFAULTS)
    assert result.clips == [Clip("a", "Low quality.", 7, 10.24), Clip("b", "Low quality.", 7, 10.24),
                            Clip("a", "Low quality.", 8, 10.24)]
    repeats, ignored = result.notes
    assert "2 line(s) ask for a clip an earlier line asks for" in repeats
    assert "line 3 (as line 1), line 5 (as line 2)" in repeats and "\n" not in repeats
    assert "'extra'" in ignored
    tally["bad row"] += 1


# --------------------------------------------------------------------------------------------
# The real command, end to end, on the tiny checkpoint
# --------------------------------------------------------------------------------------------
FAST = ["--steps", "2", "--length", "1.28", "--seed", "7"]
TWO_PROCESSES = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]
ROWS = ('{"prompt": "rain", "seed": 0}\n{"prompt": "rain"}\n{"prompt": "wind", "negative_prompt": ""}\n'
        '{"prompt": "rain", "seed": 0}\n{"prompt": "surf", "length": 0.64}\n')
# rain seed 0 (not --seed 7), rain seed 7, wind without a negative prompt, line 4 repeats line 1, surf 0.64 s
EXPECTED = {("rain", "Low quality, average quality.", 0, 1.28), ("rain", "Low quality, average quality.", 7, 1.28),
            ("wind", None, 7, 1.28), ("surf", "Low quality, average quality.", 7, 0.64)}


def _command(tiny_checkpoint, *args, launcher=None, fault=None, pass_fds=(), log=None):
    env = {**os.environ, "AUDIOLDM2_MODEL": str(tiny_checkpoint), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "TQDM_DISABLE": "1"}
    env.pop(jobs.FAULT_ENV, None)
    if fault:
        env[jobs.FAULT_ENV] = fault
    command = (launcher or [sys.executable, "-m"]) + ["helpers.make_clips", *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log or subprocess.PIPE, stderr=log or subprocess.PIPE,
                            text=True, pass_fds=pass_fds)


def _run(tiny_checkpoint, *args, **kwargs):
    process = _command(tiny_checkpoint, *args, **kwargs)
    stdout, stderr = process.communicate(timeout=900)
    return process.returncode, stdout, stderr


def check_command_job(out: Path, tally, before: dict[str, int]) -> None:
    """The real command's folder: the clips of ROWS once each, whole at full length, listed in a whole manifest."""
    records = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert {(r["prompt"], r["negative_prompt"], r["seed"], r["length_s"]) for r in records} == EXPECTED
    assert len(records) == len(EXPECTED) == len({record["file"] for record in records})
    for record in records:
        data = (out / record["file"]).read_bytes()
        assert (record["bytes"], record["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert soundfile.info(str(out / record["file"])).frames == int(record["length_s"] * SR) == record["frames"]
    assert sorted(path.name for path in out.glob("*.wav")) == sorted(record["file"] for record in records)
    assert not list(out.rglob("*.part")) and jobs.check_clips(out).damaged == {}
    for name, inode in before.items():
        assert (out / name).stat().st_ino == inode, f"{name} was whole, and was made again"
    tally["clips"] += len(records)


def test_the_command_killed_at_a_random_moment_and_damaged_resumes_whole(tiny_checkpoint, tmp_path, tally):
    rng = random.Random(SEED)
    prompts, out = tmp_path / "p.jsonl", tmp_path / "out"
    prompts.write_text(ROWS)
    point, count = rng.choice(CLIP_POINTS), rng.randint(1, 3)  # of 4 clips: the kill always lands
    returncode, _, stderr = _run(tiny_checkpoint, prompts, "--out", out, *FAST, fault=f"kill {point} {count}")
    assert returncode == -signal.SIGKILL, stderr[-2000:]
    tally["kill -9"] += 1
    power_cut(out, rng, among=["cut wav", "zero wav", "blank record", "cut record", "stray part"])
    tally["power-cut damage"] += 1
    before = whole_clips(out)
    returncode, stdout, stderr = _run(tiny_checkpoint, prompts, "--out", out, *FAST)
    assert returncode == 0, stderr[-2000:]
    assert f"4 clips: {len(before)} already made, {4 - len(before)} to make" in stdout
    assert "note: " in stderr and "line 4 (as line 1)" in stderr  # the repeat, said once
    check_command_job(out, tally, before)


def test_two_commands_on_one_folder_the_second_stops_with_one_line(tiny_checkpoint, tmp_path, tally):
    prompts, out = tmp_path / "p.jsonl", tmp_path / "out"
    prompts.write_text(ROWS)
    reached_r, reached_w = os.pipe()
    go_r, go_w = os.pipe()
    with open(tmp_path / "first.log", "w") as log:
        first = _command(tiny_checkpoint, prompts, "--out", out, *FAST, fault=f"pause job:locked 1 {reached_w} {go_r}",
                         pass_fds=(reached_w, go_r), log=log)
        os.close(reached_w)
        os.close(go_r)
        assert os.read(reached_r, 1) == b"!", (tmp_path / "first.log").read_text()[-2000:]
        returncode, stdout, stderr = _run(tiny_checkpoint, prompts, "--out", out, *FAST)
        assert returncode == 2 and stdout == ""
        [line] = [line for line in stderr.splitlines() if line.strip() and "Loading" not in line]
        assert line.startswith(f"error: {out} is in use by process {first.pid} on {socket.gethostname()}")
        assert not (out / RECORDS_DIR).exists() and not list(out.glob("*.wav"))
        os.write(go_w, b"!")
        assert first.wait(timeout=900) == 0, (tmp_path / "first.log").read_text()[-2000:]
    check_command_job(out, tally, {})
    tally["concurrent run"] += 1


def test_two_processes_killed_midway_then_resumed_make_each_clip_once(tiny_checkpoint, tmp_path, tally):
    prompts, out = tmp_path / "p.jsonl", tmp_path / "out"
    prompts.write_text(ROWS)
    returncode, stdout, stderr = _run(tiny_checkpoint, prompts, "--out", out, *FAST, "--cpu",
                                      launcher=TWO_PROCESSES, fault="kill clip:saved 1")
    assert returncode != 0 and "2 process(es)" in stdout, stderr[-3000:]
    assert re.search(r", \d+ CPU thread\(s\) per process \(\d+ cores / 2 processes on this machine\)", stdout)
    tally["kill -9"] += 2
    before = whole_clips(out)
    assert 1 <= len(before) <= 2
    returncode, stdout, stderr = _run(tiny_checkpoint, prompts, "--out", out, *FAST)
    assert returncode == 0, stderr[-2000:]
    check_command_job(out, tally, before)
