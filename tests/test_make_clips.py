"""`python -m helpers.make_clips`: bad input is refused in one line before anything is written; every clip is made
once, by one or two processes; a folder in use is refused; a clip that is not finite is not saved; the UNet is
compiled only where it can run, after the eager memory trials, and its CUDA-graph memory is counted.

Most runs call ``main`` in this process on one loaded tiny pipeline; the runs under ``accelerate launch`` start
processes. The fault-injection suite (kills, power cuts, concurrent runs) is in tests/faults/.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import helpers.make_clips as make_clips
from helpers import jobs
from helpers.errors import DoesNotFitError
from helpers.jobs import MANIFEST, Clip, read_clips
from helpers.loading import load_pipeline
from helpers.recipe import apply_beyond_the_blog, remove_beyond_the_blog

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--steps", "2", "--length", "1.28"]
TWO_PROCESSES = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return load_pipeline(tiny_checkpoint, device="cpu")


@pytest.fixture
def command(pipe, monkeypatch, capsys):
    """Run the command in this process, on the module's pipeline (float32): (exit code, stdout, stderr)."""

    def loader(model_id, *, torch_dtype, device):
        assert torch_dtype == torch.float32 and device.type == "cpu"
        return pipe

    monkeypatch.setattr(make_clips, "load_pipeline", loader)

    def run(*args) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = make_clips.main([*map(str, args), "--dtype", "float32"])
        finally:
            remove_beyond_the_blog(pipe)  # the command applied rung 7's exact changes to the module's pipeline
        stdout, stderr = capsys.readouterr()
        return code, stdout, stderr

    return run


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def _subprocess(tiny_checkpoint, *args, launcher):
    env = {**os.environ, "AUDIOLDM2_MODEL": str(tiny_checkpoint), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = launcher + ["helpers.make_clips", *map(str, args)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout, done.stderr


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
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
    assert read_clips(tmp_path / "p.txt", **defaults).clips == [Clip("a dog barks", "bad", 0, 10.24),
                                                               Clip("rain on a roof", "bad", 0, 10.24)]
    assert read_clips(tmp_path / "p.csv", **defaults).clips == [Clip("a dog barks", "bad", 7, 2.5),
                                                               Clip("rain", "bad", 0, 10.24)]
    assert read_clips(tmp_path / "p.jsonl", **defaults).clips == [Clip("a dog barks", "noise", 0, 10.24)]


@pytest.mark.parametrize("name, content, args, message", [
    ("empty.txt", "\n\n", [], "has no prompts"),
    ("missing.txt", None, [], "Cannot read the prompts file"),
    ("blank.csv", "prompt\na dog\n \n", [], "line 3: the prompt is blank"),
    ("nocolumn.csv", "text\na dog\n", [], "no 'prompt' column"),
    ("bad.jsonl", "[1, 2]\n", [], "line 1: not a JSON object"),
    ("length.csv", "prompt,length\na dog,-1\n", [], "line 2: the length must be a number of seconds more than 0"),
    ("zero.jsonl", '{"prompt": "a dog", "length": 0}\n', [], "line 1: the length must be"),
    ("seed.csv", "prompt,seed\na dog,x\n", [], "line 2: the seed must be a whole number"),
    ("ok.txt", "a dog\n", ["--model", "no/such-model"], "no/such-model"),
    ("ok.txt", "a dog\n", ["--batch-size", "0"], "--batch-size must be 1 or more"),
    ("ok.txt", "a dog\n", ["--threads", "0"], "--threads must be 1 or more"),
    ("ok.txt", "a dog\n", ["--seed", "-1"], "--seed: the seed must be a whole number"),
    ("ok.txt", "a dog\n", ["--length", "0"], "--length: the length must be"),
    ("ok.txt", "a dog\n", ["--length", "1e7"], "The largest length that fits is about"),
    ("long.csv", "prompt,length\na dog,2\nrain,1e7\n", ["--batch-size", "2"], "a 1e+07 s clip does not fit"),
])
def test_bad_input_gets_one_clear_line_a_nonzero_exit_and_nothing_written(command, tmp_path, name, content, args,
                                                                          message):
    prompts = tmp_path / name
    if content is not None:
        prompts.write_text(content)
    out = tmp_path / "out"
    returncode, stdout, stderr = command(prompts, "--out", out, *args)
    assert returncode == 2 and stdout == ""
    assert stderr.startswith("error: ") and message in stderr and stderr.count("\n") == 1
    assert not out.exists()


def test_an_output_folder_that_is_a_file_is_refused(command, tmp_path):
    (tmp_path / "p.txt").write_text("a dog\n")
    (tmp_path / "out").write_text("not a folder")
    returncode, _, stderr = command(tmp_path / "p.txt", "--out", tmp_path / "out")
    assert returncode == 2 and "is a file, not a folder" in stderr
    assert (tmp_path / "out").read_text() == "not a folder"


def test_a_seed_of_0_is_0_and_a_repeated_row_is_made_once_and_said(command, tmp_path):
    (tmp_path / "p.csv").write_text("prompt,seed,negative_prompt\na dog,0,hiss\na dog,7,hiss\na dog,0,hiss\nrain,,\n")
    out = tmp_path / "out"
    returncode, stdout, stderr = command(tmp_path / "p.csv", "--out", out, *FAST, "--seed", "7")
    assert returncode == 0, stderr
    assert "3 clips: 0 already made, 3 to make" in stdout
    assert ("\nrung 7 (the same audio): prompts in one batch, DPM-Solver++'s coefficients before the loop, no host "
            "read in the denoising loop, GPT-2 from a static cache\n") in stdout
    assert [line for line in stderr.splitlines() if line.startswith("note: ")] == [
        f"note: {tmp_path / 'p.csv'}: 1 line(s) ask for a clip an earlier line asks for (same prompt, negative "
        "prompt, seed and length), made once: line 4 (as line 2)."]
    assert sorted((r["prompt"], r["seed"], r["negative_prompt"]) for r in _manifest(out)) == [
        ("a dog", 0, "hiss"), ("a dog", 7, "hiss"), ("rain", 7, None)]


# --------------------------------------------------------------------------------------------
# The folder, and clips that are not finite
# --------------------------------------------------------------------------------------------
def test_a_folder_in_use_by_another_run_is_refused_in_one_line_naming_it(command, tmp_path):
    (tmp_path / "p.txt").write_text("a dog\n")
    out = tmp_path / "out"
    with jobs.lock_folder(out, command="the first run") as holder:
        returncode, stdout, stderr = command(tmp_path / "p.txt", "--out", out, *FAST)
    assert returncode == 2 and stdout == "" and stderr.count("\n") == 1
    assert stderr.startswith(f"error: {out} is in use by process {os.getpid()} on {socket.gethostname()}, "
                             f"started {holder['started']}: the first run. Two runs on one folder would make")
    assert not out.exists()  # the first "run" made nothing: its folder went with its lock


def test_a_clip_that_is_not_finite_is_said_not_saved_and_made_by_the_next_run(command, tmp_path, monkeypatch):
    (tmp_path / "p.txt").write_text("a dog\nbad\n")
    out = tmp_path / "out"
    real_make = make_clips._make

    def overflowing(pipe, batch, args, steps=None):
        audios = real_make(pipe, batch, args, steps)
        return [np.full_like(audio, np.nan) if clip.prompt == "bad" and steps is None else audio
                for clip, audio in zip(batch, audios)]

    monkeypatch.setattr(make_clips, "_make", overflowing)
    returncode, stdout, stderr = command(tmp_path / "p.txt", "--out", out, *FAST)
    assert returncode == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "('bad') not saved: the clip is not finite: 20480 NaN" in errors[0]
    assert "1 clip(s) came out with NaN or infinite samples and were not saved" in errors[1]
    assert [record["prompt"] for record in _manifest(out)] == ["a dog"]
    monkeypatch.setattr(make_clips, "_make", real_make)
    returncode, stdout, _ = command(tmp_path / "p.txt", "--out", out, *FAST)
    assert returncode == 0 and "2 clips: 1 already made, 1 to make" in stdout
    assert sorted(record["prompt"] for record in _manifest(out)) == ["a dog", "bad"]


@pytest.mark.parametrize("way_out, exit_code", [("finished", 0), ("stopped: folder in use", 2), ("Ctrl-C", 130)])
def test_every_way_out_leaves_the_process_group(command, tmp_path, monkeypatch, way_out, exit_code):
    """A gloo group left to Python's shutdown can abort its process.

    (results/cpu-2-cores-x86-64-2026-12-05-gloo-exit.md: 11 of 80 bare runs of the command's collectives.)
    """
    from accelerate import PartialState

    left = []
    monkeypatch.setattr(PartialState, "destroy_process_group", lambda self, group=None: left.append(group))
    (tmp_path / "p.txt").write_text("a dog\n")
    out = tmp_path / "out"
    real_make = make_clips._make

    def interrupted(pipe, batch, args, steps=None):  # the memory trials pass; the first clip is interrupted
        if steps is None:
            raise KeyboardInterrupt
        return real_make(pipe, batch, args, steps)

    if way_out == "Ctrl-C":
        monkeypatch.setattr(make_clips, "_make", interrupted)
    held = jobs.lock_folder(out, command="the first run") if way_out.startswith("stopped") else contextlib.nullcontext()
    with held:
        returncode, _, stderr = command(tmp_path / "p.txt", "--out", out, *FAST)
    assert returncode == exit_code, stderr
    assert left == [None]  # once, the default group


def test_processes_that_see_another_folder_or_job_stop_with_one_line():
    views = [{"process": 0, "host": "gpu-a", "run": "r1", "job": "j"}, {"process": 1, "host": "gpu-a", "run": "r1",
                                                                           "job": "j"}]
    assert make_clips.agreement_problem(views, "/shared/clips") is None
    other_folder = [*views, {"process": 2, "host": "gpu-b", "run": None, "job": "j"}]
    message = make_clips.agreement_problem(other_folder, "/shared/clips")
    assert message.startswith("process 2 on gpu-b does not see the folder that process 0 on gpu-a locked")
    assert "one folder shared by every machine, at the same path on each" in message and "\n" not in message
    other_job = [*views, {"process": 2, "host": "gpu-b", "run": "r1", "job": "k"}]
    assert "reads another job than process 0" in make_clips.agreement_problem(other_job, "/shared/clips")


# --------------------------------------------------------------------------------------------
# Settings from the machine: dtype, CPU threads
# --------------------------------------------------------------------------------------------
def test_dtype_auto_follows_the_course_rule(monkeypatch):
    from helpers.precision import half_precision_for

    assert make_clips.choose_dtype("auto", torch.device("cuda")) == torch.float16
    assert make_clips.choose_dtype("auto", torch.device("cpu")) == (half_precision_for("cpu") or torch.float32)
    monkeypatch.setattr(make_clips, "half_precision_for", lambda device: None)  # a CPU without AVX512-BF16 or AMX
    assert make_clips.choose_dtype("auto", torch.device("cpu")) == torch.float32
    assert make_clips.choose_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


def test_under_a_launcher_each_cpu_process_gets_its_share_of_the_cores(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setattr(make_clips, "usable_cores", lambda: 8)
    try:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        assert make_clips.set_cpu_threads(torch.device("cpu"), None) == f", {threads} CPU threads"
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")  # as torchrun sets it, with OMP_NUM_THREADS=1
        assert make_clips.set_cpu_threads(torch.device("cpu"), None) == \
            ", 2 CPU thread(s) per process (8 cores / 3 processes on this machine)"
        assert torch.get_num_threads() == 2
        assert make_clips.set_cpu_threads(torch.device("cpu"), 5) == ", 5 CPU thread(s) per process (--threads)"
        assert torch.get_num_threads() == 5
        assert make_clips.set_cpu_threads(torch.device("cuda"), None) == ""
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# The compiled UNet: where it can run, a failure explained, its memory counted
# --------------------------------------------------------------------------------------------
class FakeCompiled(torch.nn.Module):
    """What torch.compile returns, as far as the pipeline sees: the UNet, called through a wrapper; logs calls."""

    def __init__(self, unet, events: list, failure: Exception | None = None):
        super().__init__()
        self._orig_mod, self.events, self.failure = unet, events, failure

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._orig_mod, name)

    def forward(self, sample, *args, **kwargs):
        self.events.append(("compiled", tuple(sample.shape)))
        if self.failure:
            raise self.failure
        return self._orig_mod.forward(sample, *args, **kwargs)  # not through __call__: no eager event


@pytest.fixture
def unet_events(pipe, monkeypatch, tmp_path):
    """Every UNet call, eager or "compiled", in order; torch.compile replaced by FakeCompiled; the UNet restored; the
    compile cache in a folder of the test's own, and torch's variable for it restored afterwards."""
    monkeypatch.setenv("AUDIOLDM2_COMPILE_CACHE", str(tmp_path / "compile"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    events, eager = [], pipe.unet
    hook = eager.register_forward_pre_hook(lambda module, inputs: events.append(("eager", tuple(inputs[0].shape))))
    compiles = []

    def fake_compile(module, **options):
        compiles.append(options)
        return FakeCompiled(module, events, failure=getattr(fake_compile, "failure", None))

    monkeypatch.setattr(torch, "compile", fake_compile)
    decoder, vocoder = pipe.vae.decoder, pipe.vocoder
    yield events, compiles, fake_compile
    hook.remove()
    pipe.unet, pipe.vae.decoder, pipe.vocoder = eager, decoder, vocoder


def _args(*extra):
    return make_clips.parse_args(["p.txt", "--out", "x", *FAST, "--dtype", "float32", *extra])


def test_where_compile_cannot_run_the_unet_stays_eager_with_the_reason(pipe, unet_events):
    events, compiles, _ = unet_events
    compiled, line = make_clips.compile_unet(pipe, torch.device("cpu"), [(1, 1.28)], _args("--compile"),
                                             support=lambda device: (False, "Triton is not installed"))
    assert (compiled, compiles, events) == (False, [], [])
    assert line == "UNet eager: torch.compile cannot run here: Triton is not installed"


def test_a_compile_failure_at_the_first_call_is_one_line_and_the_eager_unet_goes_on(pipe, unet_events, capsys):
    from torch._dynamo.exc import TorchDynamoException

    events, compiles, fake_compile = unet_events
    fake_compile.failure = TorchDynamoException("the backend failed")
    eager = pipe.unet
    compiled, line = make_clips.compile_unet(pipe, torch.device("cpu"), [(1, 1.28)], _args("--compile"),
                                             support=lambda device: (True, "fine"))
    assert not compiled and pipe.unet is eager and events[0][0] == "compiled"
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and stderr.count("\n") == 1
    assert stderr.startswith("warning: Compiling the UNet failed: TorchDynamoException: the backend failed")
    assert stderr.rstrip().endswith("Going on with the eager UNet.")
    assert line == "UNet eager: compiling failed (the warning above says why)"
    make_clips._make(pipe, [Clip("a dog", None, 0, 1.28)], _args())  # and the job goes on, eager


def test_memory_is_fitted_eagerly_then_the_compiled_unet_is_warmed_up_at_every_shape_and_counted(
        pipe, unet_events, monkeypatch, tmp_path):
    events, compiles, _ = unet_events
    readings = iter([3.0, 3.75])  # GiB in use on the GPU before compiling, and after the warm-up
    monkeypatch.setattr(make_clips, "memory_in_use_gib", lambda device: next(readings))
    todo = [Clip("a", None, 0, 1.28), Clip("b", None, 1, 1.28), Clip("c", None, 2, 1.28), Clip("d", None, 3, 0.64)]
    lines = make_clips.prepare(pipe, torch.device("cpu"), todo, todo, 2, _args("--compile"),
                               support=lambda device: (True, "fine"))
    kinds = [kind for kind, _ in events]
    assert kinds == ["eager"] * 2 + ["compiled"] * (3 * make_clips.WARM_UP_STEPS)  # 2 trials, then 3 shapes
    assert len({shape for kind, shape in events if kind == "eager"}) == 2  # the trial lengths, 2.56 s and 5.12 s
    warmed = [shape for kind, shape in events if kind == "compiled"]
    assert len(set(warmed)) == 3 and {shape[0] for shape in warmed} == {2, 4}  # 2 x 1.28 s, 1 x 1.28 s, 1 x 0.64 s
    assert compiles == [{"mode": None, "fullgraph": True}]  # reduce-overhead (CUDA graphs) on CUDA only
    memory, unet = lines
    assert memory.endswith("(counted: the peak of two one-step trials with the eager UNet, plus 0.75 GiB the "
                           "compiled UNet keeps on the GPU after its warm-up: CUDA graphs, their pool)")
    assert unet == (f"UNet compiled (default mode), warmed up for 3 batch shape(s); compile cache "
                    f"{tmp_path / 'compile'}: no Inductor graph compiled")  # torch.compile is a fake here


def test_on_cuda_the_unet_is_compiled_for_cuda_graphs_and_warmed_up_before_the_job(pipe, unet_events, tmp_path):
    events, compiles, _ = unet_events  # the pipeline runs on the CPU; the command is told its device is CUDA
    compiled, line = make_clips.compile_unet(pipe, torch.device("cuda"), [(1, 0.64)], _args(),
                                             support=lambda device: (True, "fine"))
    assert compiled and compiles == [{"mode": "reduce-overhead", "fullgraph": True},  # the UNet: CUDA graphs
                                     {"fullgraph": True, "mode": None},  # rung 7's VAE decoder and vocoder
                                     {"fullgraph": True, "mode": None}]
    assert [kind for kind, _ in events] == ["compiled"] * (make_clips.WARM_UP_STEPS + 2)
    unet, (decoder, vocoder) = events[:-2], events[-2:]  # the UNet's warm-up, record, replay; then each decoder once
    assert len({shape for _, shape in unet}) == 1 and (len(decoder[1]), len(vocoder[1])) == (4, 3)
    assert line == (f"UNet compiled (reduce-overhead mode), warmed up for 1 batch shape(s); VAE decoder and vocoder "
                    f"compiled; compile cache {tmp_path / 'compile'}: no Inductor graph compiled")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compile")  # where Inductor would have put it


def test_a_job_that_fits_eagerly_but_not_with_the_cuda_graphs_stops_before_any_clip(pipe, unet_events, monkeypatch):
    readings = iter([3.0, 1003.0])
    monkeypatch.setattr(make_clips, "memory_in_use_gib", lambda device: next(readings))
    todo = [Clip("a", None, 0, 1.28)]
    with pytest.raises(DoesNotFitError, match=r"with the compiled UNet's 1000.00 GiB of CUDA graphs .* or leave "
                                              r"the UNet eager \(--no-compile\)"):
        make_clips.prepare(pipe, torch.device("cpu"), todo, todo, 1, _args("--compile"),
                           support=lambda device: (True, "fine"))


def test_rung_7s_exact_changes_keep_every_clip_of_a_batch(pipe):
    from diffusers import DPMSolverMultistepScheduler

    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    batch = [Clip("a dog barks", None, 0, 1.28), Clip("rain on a tin roof", "thunder", 1, 1.28)]
    args = _args("--batch-size", "2")
    before = make_clips._make(pipe, batch, args)
    changes = apply_beyond_the_blog(pipe, torch.device("cpu"), compile_decoders=False, autocast=False)
    try:
        after = make_clips._make(pipe, batch, args)
    finally:
        remove_beyond_the_blog(pipe)
    assert changes == ["prompts in one batch", "DPM-Solver++'s coefficients before the loop",
                       "no host read in the denoising loop", "GPT-2 from a static cache"]
    np.testing.assert_allclose(np.stack(after), np.stack(before), atol=1e-5)


# --------------------------------------------------------------------------------------------
# Several processes, several waveforms
# --------------------------------------------------------------------------------------------
def test_two_processes_make_every_clip_exactly_once_and_a_second_run_makes_none(tiny_checkpoint, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"sound number {i}\n" for i in range(5)) + "sound number 0\n")  # one twice
    out = tmp_path / "out"
    returncode, stdout, stderr = _subprocess(tiny_checkpoint, prompts, "--out", out, *FAST, "--cpu",
                                             launcher=TWO_PROCESSES)
    assert returncode == 0, stderr[-3000:]
    assert "6 clips" not in stdout and "5 clips: 0 already made, 5 to make, 2 process(es)" in stdout
    assert "CPU thread(s) per process" in stdout
    assert stderr.count("line 6 (as line 1)") == 1  # said once, by the main process
    manifest = _manifest(out)
    assert sorted(record["prompt"] for record in manifest) == [f"sound number {i}" for i in range(5)]
    assert {record["process"] for record in manifest} == {0, 1}  # the work was shared
    assert sorted(path.name for path in out.glob("*.wav")) == sorted(record["file"] for record in manifest)
    assert not list(out.rglob("*.part"))
    times = {path.name: path.stat().st_mtime_ns for path in out.glob("*.wav")}
    returncode, stdout, _ = _subprocess(tiny_checkpoint, prompts, "--out", out, *FAST, launcher=[sys.executable, "-m"])
    assert returncode == 0 and "5 already made, 0 to make" in stdout
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("*.wav")} == times


def test_under_accelerate_launch_a_clip_too_long_stops_every_process_with_one_line(tiny_checkpoint, tmp_path):
    (tmp_path / "p.txt").write_text("a dog\nrain\n")
    out = tmp_path / "out"
    returncode, _, stderr = _subprocess(tiny_checkpoint, tmp_path / "p.txt", "--out", out, "--length", "1e7", "--cpu",
                                        launcher=TWO_PROCESSES)
    assert returncode != 0  # torchrun reports its children's exit code 2 in its own words
    assert [line for line in stderr.splitlines() if line.startswith("error: ")] == [
        next(line for line in stderr.splitlines() if "The largest length that fits is about" in line)]
    assert not out.exists()


def test_several_waveforms_per_prompt_keep_the_best_with_its_clap_score(command, tmp_path):
    (tmp_path / "p.txt").write_text("a dog barks\nrain\n")
    out = tmp_path / "out"
    returncode, _, stderr = command(tmp_path / "p.txt", "--out", out, *FAST, "--waveforms-per-prompt", "2",
                                    "--batch-size", "2")
    assert returncode == 0, stderr[-2000:]
    manifest = _manifest(out)
    assert [record["batch_size"] for record in manifest] == [1, 1]  # ranked one prompt at a time
    assert all(-1 <= record["clap_score"] <= 1 for record in manifest)
