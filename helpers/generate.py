"""The command a learner keeps after the course: many prompts, the ladder's recipe, one process per GPU.

    python -m helpers.generate PROMPTS.txt --out DIR
    accelerate launch --multi_gpu --num_processes 2 -m helpers.generate PROMPTS.txt --out DIR

(``--multi_gpu`` makes accelerate start the processes with torchrun; on a machine without GPUs they share the
CPU, through gloo.)

PROMPTS.txt holds one prompt per line (or a .csv / .jsonl with prompt, negative_prompt, seed, length). Each
clip becomes DIR/<name>.wav, named after what makes it, and DIR/manifest.jsonl lists them all. Run it again and
it makes only what is missing (:mod:`helpers.jobs` says how). Before it writes anything, it measures how memory
grows with the clip's length and stops with one line if the longest clip would not fit (:func:`check_memory`).
Under ``accelerate launch`` each process takes its share of the clips (``PartialState.split_between_processes``);
on several machines, the same command with another ``accelerate config``.

Run it with ``python -m``; do not import it (``import helpers.generate`` would hide ``helpers.generate``, the
function). Its parts are in :mod:`helpers.jobs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

if __name__ != "__main__":
    raise ImportError("helpers/generate.py is a command: run `python -m helpers.generate --help`. "
                      "Its functions are in helpers.jobs; helpers.generate is the course's generate function.")

from helpers import settings  # noqa: E402
from helpers.errors import BadJobError, CourseError, DoesNotFitError  # noqa: E402
from helpers.jobs import check_output_folder, finished, read_clips, save_clip, write_manifest  # noqa: E402
from helpers.listening import SAMPLING_RATE  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m helpers.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("prompts", help="a text file with one prompt per line, or a .csv / .jsonl file")
    parser.add_argument("--out", required=True, help="the folder for the WAV files and manifest.jsonl")
    parser.add_argument("--model", help="hub id or checkpoint folder (default: $AUDIOLDM2_MODEL, else cvssp/audioldm2)")
    parser.add_argument("--steps", type=int, default=20, help="DPM-Solver++ steps (default 20, the ladder's)")
    parser.add_argument("--length", type=float, default=settings.AUDIO_LENGTH_S, help="seconds per clip")
    parser.add_argument("--negative-prompt", default=settings.NEGATIVE_PROMPT, help="'' for none")
    parser.add_argument("--seed", type=int, default=settings.SEED, help="for the lines that give none")
    parser.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default="auto",
                        help="auto: float16 on a GPU, float32 on a CPU")
    parser.add_argument("--batch-size", type=int, default=1, help="clips per pipeline call")
    parser.add_argument("--waveforms-per-prompt", type=int, default=1,
                        help="make several, keep the one CLAP ranks first (one prompt per call)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where there is a GPU")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the UNet (default: on a CUDA GPU)")
    return parser.parse_args(argv)


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


def _make(pipe, batch: list, args: argparse.Namespace) -> list:
    """The clips of one batch, each the best of ``--waveforms-per-prompt`` when that is more than 1."""
    import torch

    generators = [torch.Generator("cpu").manual_seed(clip.seed) for clip in batch]
    output = pipe(
        [clip.prompt for clip in batch],
        negative_prompt=[clip.negative_prompt or "" for clip in batch],
        num_inference_steps=args.steps,
        audio_length_in_s=batch[0].audio_length_in_s,
        num_waveforms_per_prompt=args.waveforms_per_prompt,
        generator=generators[0] if len(generators) == 1 else generators,  # one clip: its K waveforms share it
    )
    return list(output.audios[:: args.waveforms_per_prompt])  # the pipeline put each prompt's best first


def check_memory(pipe, device, todo: list, batch_size: int, args: argparse.Namespace) -> str:
    """One line on how long a clip fits here; raises DoesNotFitError, before anything is written, if one does not.

    Two short one-step calls of a whole batch draw the line (:func:`helpers.memory.fit_memory_line`); a clip
    that would not fit is never tried, since on a CPU the operating system kills a process that runs out of
    memory instead of raising an error.
    """
    from helpers.memory import explain_out_of_memory, fit_memory_line, peak_memory, room_for_peak_gib

    batch = todo[:batch_size]
    trial_args = argparse.Namespace(**{**vars(args), "steps": 1})

    def peak_gib_at(length_s: float) -> float:
        with explain_out_of_memory(device, what=f"A one-step trial of {length_s} s"), peak_memory(device) as peak:
            _make(pipe, [dataclasses.replace(clip, audio_length_in_s=length_s) for clip in batch], trial_args)
        return peak.peak_gib

    waveforms = len(batch) * args.waveforms_per_prompt
    processes_here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))  # set by torchrun, under accelerate launch
    line = fit_memory_line(peak_gib_at, lambda: room_for_peak_gib(device, processes_here),
                           least_per_second_gib=waveforms * 4 * SAMPLING_RATE / 2**30)  # the float32 waveform
    longest = max(clip.audio_length_in_s for clip in todo)
    if not line.fits(longest):
        raise DoesNotFitError(
            f"a {longest:g} s clip does not fit in memory here: {waveforms} waveform(s) per call need about "
            f"{line.needs_gib(longest):,.1f} GiB and {device} has about {line.room_gib:.1f} GiB for this process. "
            f"The largest length that fits is about {line.largest_length_s():,.1f} s: ask for that or less "
            "(--length, or the length column), or lower --batch-size / --waveforms-per-prompt.")
    return f"memory per call of {waveforms} waveform(s): {line}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        for name in ("steps", "batch_size", "waveforms_per_prompt"):
            if getattr(args, name) < 1:
                raise BadJobError(f"--{name.replace('_', '-')} must be 1 or more, not {getattr(args, name)}.")
        clips = list(dict.fromkeys(read_clips(args.prompts, negative_prompt=args.negative_prompt or None,
                                              seed=args.seed, audio_length_in_s=args.length)))
        out = check_output_folder(args.out)
        from helpers.loading import resolve_checkpoint

        model_id = resolve_checkpoint(args.model)
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object
    from diffusers import DPMSolverMultistepScheduler
    from tqdm.auto import tqdm

    from helpers.listening import clap_score
    from helpers.loading import load_pipeline

    # Without a GPU, say so: then each process started by `accelerate launch --multi_gpu` (torchrun) joins a
    # group of CPU processes (gloo); accelerate's own --cpu flag starts a single process unless MPI is set up.
    gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    state = PartialState(cpu=args.cpu or not gpu)
    device = state.device
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(
        args.dtype, torch.float16 if device.type in ("cuda", "mps") else torch.float32)
    recipe = {"model": model_id, "scheduler": "DPMSolverMultistepScheduler", "steps": args.steps,
              "dtype": str(dtype).removeprefix("torch."), "waveforms_per_prompt": args.waveforms_per_prompt}
    names = {clip: clip.file_name(recipe) for clip in clips}
    batch_size = 1 if args.waveforms_per_prompt > 1 else args.batch_size  # rank one prompt at a time
    todo = [clip for clip in clips if names[clip] not in finished(out)]  # nothing is written before all have read
    problem, memory = None, ""
    try:
        pipe = load_pipeline(model_id, torch_dtype=dtype, device=device)
        pipe.set_progress_bar_config(disable=True)
        if todo:
            memory = "\n" + check_memory(pipe, device, todo, batch_size, args)
    except CourseError as error:
        problem = str(error)
    problems = [message for message in gather_object([problem]) if message]  # every process stops, or none
    if problems:
        if state.is_main_process:
            print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if state.is_main_process:
        print(f"{len(clips)} clips: {len(clips) - len(todo)} already made, {len(todo)} to make, "
              f"{state.num_processes} process(es), {device}, {recipe['dtype']}, {args.steps} steps{memory}")
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    if args.compile or (args.compile is None and device.type == "cuda"):
        pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)
    made = 0
    try:
        with state.split_between_processes(todo) as mine:
            bar = tqdm(total=len(mine), desc=f"process {state.process_index}", position=state.process_index,
                       unit="clip", file=sys.stderr)
            for batch in _batches(mine, batch_size):
                start = time.perf_counter()
                audios = _make(pipe, batch, args)
                seconds = (time.perf_counter() - start) / len(batch)
                for clip, audio in zip(batch, audios):
                    record = {"file": names[clip], "prompt": clip.prompt, "negative_prompt": clip.negative_prompt,
                              "seed": clip.seed, "length_s": clip.audio_length_in_s, **recipe,
                              "clap_score": clap_score(pipe, audio, clip.prompt) if args.waveforms_per_prompt > 1
                              else None,
                              "seconds": round(seconds, 4), "batch_size": len(batch), "process": state.process_index,
                              "device": str(device)}
                    save_clip(out, names[clip], audio, SAMPLING_RATE, record)
                    made += 1
                bar.update(len(batch))
            bar.close()
    except KeyboardInterrupt:
        print(f"\nstopped: process {state.process_index} made {made} clips; every finished file is kept. "
              "Run the same command again to make the rest.", file=sys.stderr)
        return 130
    state.wait_for_everyone()
    if state.is_main_process:
        print(f"{write_manifest(out)} clips in {out / 'manifest.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
