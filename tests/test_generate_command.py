"""`python -m helpers.generate`: bad input is refused before anything is written; every clip is made once, by
one or two processes; a killed job resumed makes the rest."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.jobs import MANIFEST, RECORDS_DIR, Clip, finished, read_clips

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--steps", "2", "--length", "1.28"]
TWO_PROCESSES = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]


def _command(tiny_checkpoint, *args, launcher=None, **popen):
    env = {**os.environ, "AUDIOLDM2_MODEL": str(tiny_checkpoint), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = (launcher or [sys.executable, "-m"]) + ["helpers.generate", *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def _run(tiny_checkpoint, *args, launcher=None):
    process = _command(tiny_checkpoint, *args, launcher=launcher)
    stdout, stderr = process.communicate(timeout=900)
    return process.returncode, stdout, stderr


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def test_clip_names_are_stable_and_say_what_made_them():
    clip = Clip("Techno, upbeat!", None, 0, 10.24)
    assert clip.file_name({"steps": 20}) == clip.file_name({"steps": 20})
    assert clip.file_name({"steps": 20}).startswith("techno-upbeat-")
    assert clip.file_name({"steps": 20}) != clip.file_name({"steps": 10})
    assert Clip("Techno, upbeat!", None, 1, 10.24).file_name({}) != clip.file_name({})


def test_prompt_files_in_three_formats(tmp_path):
    (tmp_path / "p.txt").write_text("a dog barks\n\nrain on a roof\n")
    (tmp_path / "p.csv").write_text("prompt,seed,length\na dog barks,7,2.5\nrain,,\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "a dog barks", "negative_prompt": "noise"}\n\n')
    defaults = {"negative_prompt": "bad", "seed": 0, "audio_length_in_s": 10.24}
    assert read_clips(tmp_path / "p.txt", **defaults) == [Clip("a dog barks", "bad", 0, 10.24),
                                                         Clip("rain on a roof", "bad", 0, 10.24)]
    assert read_clips(tmp_path / "p.csv", **defaults) == [Clip("a dog barks", "bad", 7, 2.5),
                                                         Clip("rain", "bad", 0, 10.24)]
    assert read_clips(tmp_path / "p.jsonl", **defaults) == [Clip("a dog barks", "noise", 0, 10.24)]


@pytest.mark.parametrize("name, content, args, message", [
    ("empty.txt", "\n\n", [], "has no prompts"),
    ("missing.txt", None, [], "Cannot read the prompts file"),
    ("blank.csv", "prompt\na dog\n \n", [], "line 3: the prompt is blank"),
    ("nocolumn.csv", "text\na dog\n", [], "no 'prompt' column"),
    ("bad.jsonl", "[1, 2]\n", [], "line 1: not a JSON object"),
    ("length.csv", "prompt,length\na dog,-1\n", [], "more than 0 seconds"),
    ("ok.txt", "a dog\n", ["--model", "no/such-model"], "no/such-model"),
    ("ok.txt", "a dog\n", ["--batch-size", "0"], "--batch-size must be 1 or more"),
    ("ok.txt", "a dog\n", ["--length", "1e7"], "The largest length that fits is about"),
    ("long.csv", "prompt,length\na dog,2\nrain,1e7\n", ["--batch-size", "2"], "a 1e+07 s clip does not fit"),
])
def test_bad_input_gets_one_clear_line_a_nonzero_exit_and_nothing_written(tiny_checkpoint, tmp_path, name,
                                                                          content, args, message):
    prompts = tmp_path / name
    if content is not None:
        prompts.write_text(content)
    out = tmp_path / "out"
    returncode, stdout, stderr = _run(tiny_checkpoint, prompts, "--out", out, *args)
    assert returncode == 2
    assert stderr.startswith("error: ") and message in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_an_output_folder_that_is_a_file_is_refused(tiny_checkpoint, tmp_path):
    (tmp_path / "p.txt").write_text("a dog\n")
    (tmp_path / "out").write_text("not a folder")
    returncode, _, stderr = _run(tiny_checkpoint, tmp_path / "p.txt", "--out", tmp_path / "out")
    assert returncode == 2 and "is a file, not a folder" in stderr
    assert (tmp_path / "out").read_text() == "not a folder"


def test_two_processes_make_every_clip_exactly_once_and_a_second_run_makes_none(tiny_checkpoint, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"sound number {i}\n" for i in range(5)) + "sound number 0\n")  # one twice
    out = tmp_path / "out"
    returncode, stdout, stderr = _run(tiny_checkpoint, prompts, "--out", out, *FAST, "--cpu", launcher=TWO_PROCESSES)
    assert returncode == 0, stderr[-3000:]
    assert "6 clips" not in stdout and "5 clips: 0 already made, 5 to make, 2 process(es)" in stdout
    manifest = _manifest(out)
    assert sorted(record["prompt"] for record in manifest) == [f"sound number {i}" for i in range(5)]
    assert {record["process"] for record in manifest} == {0, 1}  # the work was shared
    assert sorted(path.name for path in out.glob("*.wav")) == sorted(record["file"] for record in manifest)
    assert not list(out.rglob("*.part"))
    times = {path.name: path.stat().st_mtime_ns for path in out.glob("*.wav")}
    returncode, stdout, _ = _run(tiny_checkpoint, prompts, "--out", out, *FAST)
    assert returncode == 0 and "5 already made, 0 to make" in stdout
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("*.wav")} == times


def test_under_accelerate_launch_a_clip_too_long_stops_every_process_with_one_line(tiny_checkpoint, tmp_path):
    (tmp_path / "p.txt").write_text("a dog\nrain\n")
    out = tmp_path / "out"
    returncode, _, stderr = _run(tiny_checkpoint, tmp_path / "p.txt", "--out", out, "--length", "1e7", "--cpu",
                                 launcher=TWO_PROCESSES)
    assert returncode != 0  # torchrun reports its children's exit code 2 in its own words
    assert [line for line in stderr.splitlines() if line.startswith("error: ")] == [
        next(line for line in stderr.splitlines() if "The largest length that fits is about" in line)]
    assert not out.exists()


def test_a_killed_job_resumed_makes_the_rest_and_nothing_twice(tiny_checkpoint, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"rain number {i}\n" for i in range(6)))
    out = tmp_path / "out"
    with open(tmp_path / "log.txt", "w") as log:  # a file, not a pipe: nothing blocks the job while we wait
        env = {**os.environ, "AUDIOLDM2_MODEL": str(tiny_checkpoint), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen([sys.executable, "-m", "helpers.generate", str(prompts), "--out", str(out), *FAST],
                                   cwd=ROOT, env=env, stdout=log, stderr=log)
        records = out / RECORDS_DIR
        while process.poll() is None and not list(records.glob("*.json")):  # until the first clip is finished
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)  # as a crash would: no clean-up runs
        process.wait()
    # The kill may land between a clip's WAV and its record: that clip was in flight, and is made again.
    first = finished(out)
    assert 1 <= len(first) < 6 or process.returncode == 0
    times = {name: (out / name).stat().st_mtime_ns for name in first}
    returncode, stdout, stderr = _run(tiny_checkpoint, prompts, "--out", out, *FAST)
    assert returncode == 0, stderr[-2000:]
    manifest = _manifest(out)
    assert sorted(record["prompt"] for record in manifest) == [f"rain number {i}" for i in range(6)]
    assert f"{len(first)} already made, {6 - len(first)} to make" in stdout
    assert {name: (out / name).stat().st_mtime_ns for name in first} == times  # nothing finished made twice
    assert not list(out.rglob("*.part"))


def test_several_waveforms_per_prompt_keep_the_best_with_its_clap_score(tiny_checkpoint, tmp_path):
    (tmp_path / "p.txt").write_text("a dog barks\nrain\n")
    out = tmp_path / "out"
    returncode, _, stderr = _run(tiny_checkpoint, tmp_path / "p.txt", "--out", out, *FAST,
                                 "--waveforms-per-prompt", "2", "--batch-size", "2")
    assert returncode == 0, stderr[-2000:]
    manifest = _manifest(out)
    assert [record["batch_size"] for record in manifest] == [1, 1]  # ranked one prompt at a time
    assert all(-1 <= record["clap_score"] <= 1 for record in manifest)
