"""The command a learner keeps after the course: many prompts, the ladder's recipe, one process per GPU.

    python -m helpers.make_clips PROMPTS.txt --out DIR
    accelerate launch --multi_gpu --num_processes 2 -m helpers.make_clips PROMPTS.txt --out DIR

(``--multi_gpu`` makes accelerate start the processes with torchrun; on a machine without GPUs they share the
CPU, through gloo, each with its share of the cores.)

PROMPTS.txt holds one prompt per line (or a .csv / .jsonl with prompt, negative_prompt, seed, length). Each clip
becomes DIR/<name>.wav, named after what makes it, and DIR/manifest.jsonl lists them all. Run it again and it makes
only what is missing; a second run started on the same folder while the first works stops with one line naming
it (:mod:`helpers.jobs` says how files survive a crash). Before it writes a clip, it measures how memory grows
with the clip's length and stops with one line if the longest clip would not fit (:func:`prepare`).

Under ``accelerate launch`` each process takes its share of the clips (``PartialState.split_between_processes``).
On several machines, ``--out`` must be one folder that every machine sees at the same path (a shared file
system): the command checks that every process reads the lock file the main process wrote there.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shlex
import socket
import sys
import time

import torch

from helpers import compile_cache, compiling, settings
from helpers.errors import BadJobError, CourseError, DoesNotFitError, NonFiniteAudioError
from helpers.jobs import (MANIFEST, Clip, check_length, check_output_folder, check_seed, damage_line, fault_point,
                          read_clips, read_lock, save_clip, start_job, write_manifest)
from helpers.listening import SAMPLING_RATE
from helpers.loading import load_pipeline, resolve_checkpoint
from helpers.memory import GIB, MemoryLine, explain_out_of_memory, fit_memory_line, peak_memory, room_for_peak_gib
from helpers.precision import half_precision_for
from helpers.recipe import apply_beyond_the_blog, compile_the_decoders

WARM_UP_STEPS = 3  # CUDA graph trees: the first UNet call warms up, the second records, the third replays
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m helpers.make_clips", description=__doc__.split("\n\n")[0])
    parser.add_argument("prompts", help="a text file with one prompt per line, or a .csv / .jsonl file")
    parser.add_argument("--out", required=True,
                        help="the folder for the WAV files and manifest.jsonl (on several machines: one shared "
                             "folder, the same path on each)")
    parser.add_argument("--model", help="hub id or checkpoint folder (default: $AUDIOLDM2_MODEL, else cvssp/audioldm2)")
    parser.add_argument("--steps", type=int, default=20, help="DPM-Solver++ steps (default 20, the ladder's)")
    parser.add_argument("--length", type=float, default=settings.AUDIO_LENGTH_S,
                        help="seconds per clip, for the rows that give none")
    parser.add_argument("--negative-prompt", default=settings.NEGATIVE_PROMPT,
                        help="for the rows that give none; '' for none")
    parser.add_argument("--seed", type=int, default=settings.SEED, help="for the rows that give none")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto",
                        help="auto: float16 on a GPU, bfloat16 on a CPU that computes it (AVX512-BF16 or AMX), "
                             "else float32")
    parser.add_argument("--batch-size", type=int, default=1, help="clips per pipeline call")
    parser.add_argument("--waveforms-per-prompt", type=int, default=1,
                        help="make several, keep the one CLAP ranks first (one prompt per call)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where there is a GPU")
    parser.add_argument("--threads", type=int,
                        help="CPU threads per process (default under accelerate launch: the cores this process may "
                             "use, divided by the processes on this machine)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the UNet (default: on a CUDA GPU where it can run)")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------
# Settings from the machine
# --------------------------------------------------------------------------------------------
def choose_dtype(name: str, device: torch.device) -> torch.dtype:
    """``--dtype``; ``auto`` is the course's rule (:func:`helpers.precision.half_precision_for`), else float32."""
    if name != "auto":
        return DTYPES[name]
    return half_precision_for(device) or torch.float32


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), counting a core's hyper-threads once."""
    import psutil

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(allowed, psutil.cpu_count(logical=False) or allowed))


def set_cpu_threads(device: torch.device, wanted: int | None) -> str:
    """Set torch's CPU threads for this process and say how many (empty off the CPU).

    ``accelerate launch`` sets ``OMP_NUM_THREADS=1`` in every process unless told otherwise, so two CPU processes
    on a 32-core machine would use 2 threads in all. Under a launcher (``LOCAL_WORLD_SIZE`` is set), each process
    gets the cores divided by the processes on its machine; alone, torch's own default stays; ``--threads``
    overrides both.
    """
    if device.type != "cpu":
        return ""
    processes_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if wanted is None and "LOCAL_WORLD_SIZE" not in os.environ:
        return f", {torch.get_num_threads()} CPU threads"
    threads = wanted or max(1, usable_cores() // processes_here)
    torch.set_num_threads(threads)
    how = "--threads" if wanted else f"{usable_cores()} cores / {processes_here} processes on this machine"
    return f", {threads} CPU thread(s) per process ({how})"


# --------------------------------------------------------------------------------------------
# Making clips
# --------------------------------------------------------------------------------------------
def _batches(clips: list, size: int):
    """Consecutive clips of the same length, at most ``size`` at a time."""
    batch: list = []
    for clip in clips:
        if batch and (len(batch) == size or clip.audio_length_in_s != batch[0].audio_length_in_s):
            yield batch
            batch = []
        batch.append(clip)
    if batch:
        yield batch


def shapes_of(clips: list[Clip], batch_size: int) -> list[tuple[int, float]]:
    """The (batch size, length) of every call the job will make, each once: each is one compiled graph."""
    return list(dict.fromkeys((len(batch), batch[0].audio_length_in_s) for batch in _batches(clips, batch_size)))


def _make(pipe, batch: list, args: argparse.Namespace, steps: int | None = None) -> list:
    """The clips of one batch, each the best of ``--waveforms-per-prompt`` when that is more than 1."""
    generators = [torch.Generator("cpu").manual_seed(clip.seed) for clip in batch]
    output = pipe(
        [clip.prompt for clip in batch],
        negative_prompt=[clip.negative_prompt or "" for clip in batch],
        num_inference_steps=steps or args.steps,
        audio_length_in_s=batch[0].audio_length_in_s,
        num_waveforms_per_prompt=args.waveforms_per_prompt,
        generator=generators[0] if len(generators) == 1 else generators,  # one clip: its K waveforms share it
    )
    return list(output.audios[:: args.waveforms_per_prompt])  # the pipeline put each prompt's best first


# --------------------------------------------------------------------------------------------
# Before the first clip: memory, and the compiled UNet
# --------------------------------------------------------------------------------------------
def fit_line(pipe, device: torch.device, todo: list[Clip], batch_size: int, args: argparse.Namespace) -> MemoryLine:
    """Peak memory against clip length, from two one-step calls of a whole batch with the eager UNet.

    :func:`helpers.memory.fit_memory_line` draws the line; the floor on its slope is the float32 waveform itself.
    """
    batch = todo[:batch_size]

    def peak_gib_at(length_s: float) -> float:
        with explain_out_of_memory(device, what=f"A one-step trial of {length_s} s"), peak_memory(device) as peak:
            _make(pipe, [dataclasses.replace(clip, audio_length_in_s=length_s) for clip in batch], args, steps=1)
        return peak.peak_gib

    waveforms = len(batch) * args.waveforms_per_prompt
    processes_here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))  # set by torchrun, under accelerate launch
    return fit_memory_line(peak_gib_at, lambda: room_for_peak_gib(device, processes_here),
                           least_per_second_gib=waveforms * 4 * SAMPLING_RATE / 2**30)


def check_fits(line: MemoryLine, todo: list[Clip], waveforms: int, device: torch.device, *, counted: str = "",
               advice: str = "") -> None:
    """Raise DoesNotFitError, with the largest length that fits, if the longest clip of ``todo`` would not."""
    longest = max(clip.audio_length_in_s for clip in todo)
    if line.fits(longest):
        return
    raise DoesNotFitError(
        f"a {longest:g} s clip does not fit in memory here: {waveforms} waveform(s) per call need about "
        f"{line.needs_gib(longest):,.1f} GiB{counted} and {device} has about {line.room_gib:.1f} GiB for this "
        f"process. The largest length that fits is about {line.largest_length_s():,.1f} s: ask for that or less "
        f"(--length, or the length column), or lower --batch-size / --waveforms-per-prompt{advice}.")


def memory_in_use_gib(device: torch.device) -> float | None:
    """What the GPU has in use (every allocation, the driver's included), after this process's cache is emptied;
    None off CUDA. Taken before compiling and after warming up, the difference is what the compiled UNet keeps:
    its CUDA-graph memory pool (which ``torch.cuda.empty_cache`` cannot free), its graphs and its kernels."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    return (total - free) / GIB


def compile_unet(pipe, device: torch.device, shapes: list[tuple[int, float]], args: argparse.Namespace,
                 *, support=None) -> tuple[bool, str]:
    """Compile the UNet, where it can run, and warm it up for every batch shape of the job: ``(compiled, line)``.

    :func:`helpers.compiling.compile_support` looks first (a GPU too old for Triton, no Triton, no compiler: eager,
    with the reason). The warm-up calls (``WARM_UP_STEPS`` steps per shape) are the first compiled calls: a
    compile failure there is explained in one line and the eager UNet goes on
    (:func:`helpers.compiling.explain_compile_failure`). On CUDA, ``mode="reduce-overhead"`` records a CUDA graph
    per shape; warming every shape up now puts all of their memory on the GPU before it is counted. There, rung 7's
    VAE decoder and vocoder are compiled too (:func:`helpers.recipe.compile_the_decoders`), in the same warm-up;
    the line says if one of them went on eager. The compiled
    kernels go to the course's compile cache (:func:`helpers.compile_cache.use_compile_cache`), so that a UNet a
    notebook or an earlier job compiled loads in seconds; the line says whether it did.
    """
    ok, why = (support or compiling.compile_support)(device)
    if not ok:
        return False, f"UNet eager: torch.compile cannot run here: {why}"
    folder = compile_cache.use_compile_cache(quiet=True)
    found_before = compile_cache.lookups()
    eager = pipe.unet
    mode = "reduce-overhead" if device.type == "cuda" else None
    pipe.unet = torch.compile(eager, mode=mode, fullgraph=True)
    decoders = ""  # on CUDA, rung 7 compiles the VAE decoder and the vocoder too; the warm-up compiles them
    if device.type == "cuda":
        decoders = "; " + compile_the_decoders(pipe, device, support=lambda device: (ok, why))
    said = io.StringIO()
    with contextlib.redirect_stdout(said), \
            compiling.explain_compile_failure("Compiling the UNet", reraise=False) as failure:
        for batch_size, length_s in shapes:
            batch = [Clip("warm-up", None, 0, length_s)] * batch_size
            with explain_out_of_memory(device, what=f"Warming up the compiled UNet at {batch_size} x {length_s} s"):
                _make(pipe, batch, args, steps=WARM_UP_STEPS)
    if failure.happened:
        pipe.unet = eager
        reason = " ".join(failure.message.splitlines()[:2])
        print(f"warning: {reason} Going on with the eager UNet.", file=sys.stderr)
        return False, "UNet eager: compiling failed (the warning above says why)"
    for module in (pipe.vae.decoder, pipe.vocoder):
        if isinstance(module, compiling.CompiledOrEager) and module.failed:
            decoders += f"; {module.what.removeprefix('Compiling the ')} eager: {module.failed}"
    found = compile_cache.lookups() - found_before
    return True, (f"UNet compiled ({mode or 'default'} mode), warmed up for {len(shapes)} batch shape(s){decoders}; "
                  f"compile cache {folder}: {found}")


def prepare(pipe, device: torch.device, todo: list[Clip], mine: list[Clip], batch_size: int,
            args: argparse.Namespace, *, support=None) -> list[str]:
    """Before the first clip: the memory line (eager), the UNet compiled, and the line again with what compiling
    added. Raises DoesNotFitError, before any clip is written, if the longest clip would not fit. Returns the
    lines to print.

    The order matters on CUDA: the trials run with the eager UNet at 2.56 s and 5.12 s (compiling for those
    lengths would record CUDA graphs the job never uses, and make the compiled kernels dynamic); then the UNet
    is compiled and warmed up at every shape the job uses; then what the GPU holds more than before (the
    CUDA-graph pool of ``mode="reduce-overhead"``, the graphs, the kernels) is added to the line and the check is
    made again. The sum errs on the safe side: in the eager trials the UNet's activations were in the peak too.
    """
    waveforms = min(batch_size, len(todo)) * args.waveforms_per_prompt
    line = fit_line(pipe, device, todo, batch_size, args)
    check_fits(line, todo, waveforms, device)  # before spending minutes compiling for a job that cannot run
    counted = "the peak of two one-step trials with the eager UNet"
    lines = []
    if args.compile or (args.compile is None and device.type == "cuda"):
        if mine:
            before = memory_in_use_gib(device)
            compiled, unet_line = compile_unet(pipe, device, shapes_of(mine, batch_size), args, support=support)
            lines.append(unet_line)
            after = memory_in_use_gib(device)
            if compiled and before is not None and after is not None:
                kept = max(0.0, after - before)
                line = dataclasses.replace(line, base_gib=line.base_gib + kept)
                counted += f", plus {kept:.2f} GiB the compiled UNet keeps on the GPU after its warm-up: CUDA graphs, their pool"
                check_fits(line, todo, waveforms, device,
                           counted=f" with the compiled UNet's {kept:.2f} GiB of CUDA graphs",
                           advice=", or leave the UNet eager (--no-compile)")
            elif compiled:
                counted += "; the compiled UNet's own memory is not counted off CUDA"
        else:
            lines.append("UNet eager: no clip to make in this process")
    else:
        lines.append("UNet eager" + (" (--no-compile)" if args.compile is False else ""))
    return [f"memory per call of {waveforms} waveform(s): {line} (counted: {counted})", *lines]


# --------------------------------------------------------------------------------------------
# Every process: the same job, the same folder
# --------------------------------------------------------------------------------------------
def job_key(clips: list[Clip], recipe: dict) -> str:
    """A digest of what a process would make: equal on every process of one job."""
    return hashlib.sha256(json.dumps([[dataclasses.astuple(clip) for clip in clips], recipe]).encode()).hexdigest()


def agreement_problem(views: list[dict], out) -> str | None:
    """One line if a process disagrees with process 0: it sees another folder, or reads another job.

    ``views`` holds, per process in order, its index, host, the run id it read from ``out/.lock`` and its
    :func:`job_key`. The main process wrote the run id there a moment before; a process that reads another is
    looking at another folder (on another machine: a local folder of the same name, not the shared one).
    """
    main = views[0]
    for view in views[1:]:
        if view["run"] != main["run"]:
            return (f"process {view['process']} on {view['host']} does not see the folder that process 0 on "
                    f"{main['host']} locked ({out}/.lock holds another run there, or none): --out must be one "
                    "folder shared by every machine, at the same path on each (NFS or another shared file system "
                    "with file locks).")
        if view["job"] != main["job"]:
            return (f"process {view['process']} on {view['host']} reads another job than process 0 on "
                    f"{main['host']} (other prompts, or other settings): give every machine the same prompts "
                    "file, model and command.")
    return None


def _stopped(state, problem: str | None) -> bool:
    """True on every process if any has a problem; the main process prints the first one."""
    from accelerate.utils import gather_object

    problems = [message for message in gather_object([problem]) if message]
    if problems and state.is_main_process:
        print(f"error: {problems[0]}", file=sys.stderr)
    return bool(problems)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    first = int(os.environ.get("RANK", "0")) == 0  # under accelerate launch, one process prints an input error
    try:
        for name in ("steps", "batch_size", "waveforms_per_prompt", "threads"):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise BadJobError(f"--{name.replace('_', '-')} must be 1 or more, not {getattr(args, name)}.")
        check_seed(args.seed, "--seed")
        check_length(args.length, "--length")
        prompts = read_clips(args.prompts, negative_prompt=args.negative_prompt or None, seed=args.seed,
                             audio_length_in_s=args.length)
        out = check_output_folder(args.out)
        model_id = resolve_checkpoint(args.model)
    except CourseError as error:
        if first:
            print(f"error: {error}", file=sys.stderr)
        return 2

    from accelerate import PartialState
    from accelerate.utils import gather_object
    from diffusers import DPMSolverMultistepScheduler
    from tqdm.auto import tqdm

    from helpers.listening import clap_score

    # Without a GPU, say so: then each process started by `accelerate launch --multi_gpu` (torchrun) joins a
    # group of CPU processes (gloo); accelerate's own --cpu flag starts a single process unless MPI is set up.
    gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    state = PartialState(cpu=args.cpu or not gpu)
    device = state.device
    threads = set_cpu_threads(device, args.threads)
    dtype = choose_dtype(args.dtype, device)
    recipe = {"model": model_id, "scheduler": "DPMSolverMultistepScheduler", "steps": args.steps,
              "dtype": str(dtype).removeprefix("torch."), "waveforms_per_prompt": args.waveforms_per_prompt}
    clips = prompts.clips
    names = {clip: clip.file_name(recipe) for clip in clips}
    batch_size = 1 if args.waveforms_per_prompt > 1 else args.batch_size  # rank one prompt at a time

    with contextlib.ExitStack() as held:
        # Last, on every way out: leave the process group while Python is whole. A gloo group left to the
        # interpreter's shutdown can abort its process ("terminate called without an active exception").
        held.callback(state.destroy_process_group)
        # 1. The folder: the main process locks it and checks every clip in it; every process must see it.
        start, problem = None, None
        if state.is_main_process:
            try:
                command = shlex.join(["python", "-m", "helpers.make_clips",
                                      *(sys.argv[1:] if argv is None else argv)])
                start = held.enter_context(start_job(out, command=command))
            except CourseError as error:
                problem = str(error)
        found = gather_object([(start.holder["run"], sorted(start.check.finished)) if start else None])[0]
        run, done = found or (None, [])  # the main process's: its run id, and the clips whole in the folder
        view = {"process": state.process_index, "host": socket.gethostname(), "run": read_lock(out).get("run"),
                "job": job_key(clips, recipe)}
        views = gather_object([view])  # every process takes part in every gather, whatever it found
        if problem is None and run:
            problem = agreement_problem(views, out)
        if _stopped(state, problem):
            return 2
        done = set(done)
        todo = [clip for clip in clips if names[clip] not in done]
        with state.split_between_processes(todo) as share:
            mine = list(share)
        if state.is_main_process:
            removed = start.removed and f"{start.removed} half-written file(s) of a stopped run removed."
            for note in [*prompts.notes, removed, damage_line(start.check, set(names.values()))]:
                if note:
                    print(f"note: {note}", file=sys.stderr)

        # 2. The pipeline, the memory check and the compiled UNet, before the first clip.
        problem, lines = None, []
        try:
            pipe = load_pipeline(model_id, torch_dtype=dtype, device=device)
            pipe.set_progress_bar_config(disable=True)
            pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
            # rung 7's changes that keep the audio (the decoders compile with the UNet, after the memory trials)
            exact = apply_beyond_the_blog(pipe, device, compile_decoders=False, autocast=False)
            if todo:
                lines = prepare(pipe, device, todo, mine, batch_size, args)
        except CourseError as error:
            problem = str(error)
        if _stopped(state, problem):
            return 2
        if state.is_main_process:
            print("\n".join([f"{len(clips)} clips: {len(clips) - len(todo)} already made, {len(todo)} to make, "
                             f"{state.num_processes} process(es), {device}{threads}, {recipe['dtype']}, "
                             f"{args.steps} steps", "rung 7 (the same audio): " + ", ".join(exact), *lines]),
                  flush=True)

        # 3. The clips: each process its share; each clip saved whole, or not at all.
        made, unsaved = 0, []
        try:
            bar = tqdm(total=len(mine), desc=f"process {state.process_index}", position=state.process_index,
                       unit="clip", file=sys.stderr)
            for batch in _batches(mine, batch_size):
                start_s = time.perf_counter()
                audios = _make(pipe, batch, args)
                seconds = (time.perf_counter() - start_s) / len(batch)
                fault_point("batch:made")
                for clip, audio in zip(batch, audios):
                    record = {"prompt": clip.prompt, "negative_prompt": clip.negative_prompt, "seed": clip.seed,
                              "length_s": clip.audio_length_in_s, **recipe,
                              "clap_score": clap_score(pipe, audio, clip.prompt) if args.waveforms_per_prompt > 1
                              else None,
                              "seconds": round(seconds, 4), "batch_size": len(batch), "process": state.process_index,
                              "device": str(device)}
                    try:  # the WAV file, then its record; save_clip adds the WAV's size and SHA-256
                        save_clip(out, names[clip], audio, SAMPLING_RATE, record)
                        made += 1
                    except NonFiniteAudioError as error:
                        tqdm.write(f"error: {error}; the next run makes it again.", file=sys.stderr)  # above the bar
                        unsaved.append(names[clip])
                bar.update(len(batch))
            bar.close()
        except KeyboardInterrupt:
            print(f"\nstopped: process {state.process_index} made {made} clips; every finished file is kept. "
                  "Run the same command again to make the rest.", file=sys.stderr)
            if state.is_main_process:
                write_manifest(out)
            return 130
        unsaved = [name for names_of_one in gather_object([unsaved]) for name in names_of_one]
        state.wait_for_everyone()
        if not state.is_main_process:
            return 1 if unsaved else 0
        print(f"{write_manifest(out)} clips in {out / MANIFEST}")
        if unsaved:
            print(f"error: {len(unsaved)} clip(s) came out with NaN or infinite samples and were not saved (a float16 "
                  "overflow, most likely): run again with --dtype float32 (or bfloat16 on a GPU that computes it).",
                  file=sys.stderr)
            return 1
        return 0



DEMO_STEPS, DEMO_SECONDS = 2, 2.56  # notebook 11's CPU demonstration: each clip cut to this


@dataclasses.dataclass(frozen=True)
class NotebookLaunch:
    """How notebook 11 runs this command on its own device: how many processes, with which flags, and why."""

    processes: int
    flags: tuple[str, ...]
    why: str


def notebook_launch(device: torch.device | str, *, steps: int, seconds: float,
                    gpus: int | None = None) -> NotebookLaunch:
    """The processes and flags notebook 11 runs the command with on ``device``, and one line saying why.

    Why a helper decides: on a GPU the job is the recipe's (``steps`` of the blog's 20, clips of ``seconds``), one
    process per GPU, the UNet eager (for four clips, compiling takes longer than it saves). On a CPU two processes
    share the cores only to show the work split between them, so each clip is cut to 2 steps and 2.56 s: the
    recipe's settings would take minutes a clip there. ``gpus``: how many CUDA GPUs (default: this machine's).
    """
    kind = torch.device(device).type
    if kind == "cpu":
        demo_steps, demo_seconds = min(steps, DEMO_STEPS), min(seconds, DEMO_SECONDS)
        return NotebookLaunch(
            processes=2, flags=("--cpu", "--steps", str(demo_steps), "--length", f"{demo_seconds:g}"),
            why=(f"a CPU: 2 processes share its cores, a demonstration of the work split, not the recipe's settings: "
                 f"{settings.steps_label(20, demo_steps)}, {demo_seconds:g} s clips "
                 f"(the blog: {settings.AUDIO_LENGTH_S:g} s)"))
    count = max(torch.cuda.device_count() if gpus is None else gpus, 1) if kind == "cuda" else 1
    where = f"{count} CUDA GPU(s), one process each" if kind == "cuda" else f"the {kind} device, one process"
    return NotebookLaunch(
        processes=count, flags=("--no-compile", "--steps", str(steps), "--length", f"{seconds:g}"),
        why=(f"{where}: the recipe, DPM-Solver++ {settings.steps_label(20, steps)}, {seconds:g} s clips, the UNet "
             "eager (--no-compile: for four clips, compiling takes longer than it saves)"))

if __name__ == "__main__":
    sys.exit(main())
