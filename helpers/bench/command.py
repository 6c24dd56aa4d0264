"""``python -m helpers.bench --deadline SECONDS --out DIR``: the command, its arguments, and the deadline's clock."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from helpers import settings
from helpers.bench.engine import Engine
from helpers.bench.items import Bench
from helpers.bench.schedule import Deadline, DeadlineReached, alarm_at
from helpers.bench.summary import RESULTS_FILE, SUMMARY_FILE, write_summary
from helpers.errors import CourseError

START_MONOTONIC = time.monotonic()


def process_age_s() -> float:
    """Seconds since this process started (its imports count against the deadline too)."""
    try:
        import psutil

        return max(time.time() - psutil.Process().create_time(), 0.0)
    except Exception:  # no psutil, or no process table: count from this module's import
        return time.monotonic() - START_MONOTONIC


def command_line(argv: list[str]) -> str:
    """The command as run, with the course's variables that change what it measures."""
    names = (settings.MODEL_ENV, settings.SMOKE_ENV, settings.FULL_ENV)
    env = " ".join(f"{name}={shlex.quote(os.environ[name])}" for name in names if os.environ.get(name))
    return (env + " " if env else "") + "python -m helpers.bench " + shlex.join(argv)


def parse(argv: list[str]) -> argparse.Namespace:
    from helpers.bench import __doc__ as about

    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=about.split("\n\n")[0])
    parser.add_argument("--deadline", type=float, required=True, metavar="SECONDS",
                        help="end by then, counted from the start of this process, less the time a random-weights "
                             "checkpoint takes to build the first time (skipping what would not fit)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help=f"folder for {RESULTS_FILE} and {SUMMARY_FILE} (created; rows are appended)")
    parser.add_argument("--model", default=None, help=f"checkpoint: a hub id, a folder, tiny or full-size "
                                                      f"(default: ${settings.MODEL_ENV}, else {settings.DEFAULT_MODEL_ID})")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best one here)")
    parser.add_argument("--summarize", action="store_true", help="only write DIR's summary.md again from its results")
    args = parser.parse_args(argv)
    if args.deadline <= 0:
        parser.error(f"--deadline must be a positive number of seconds, not {args.deadline:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarize:
        print(write_summary(args.out).read_text())
        return 0
    from helpers.loading import default_device, resolve_checkpoint

    model = args.model or settings.model_id()
    try:
        build_start = time.monotonic()
        resolve_checkpoint(model)  # a random-weights checkpoint is built here the first time, before the clock
        build_s = time.monotonic() - build_start
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    deadline = Deadline(time.monotonic() + args.deadline - max(process_age_s() - build_s, 0.0))
    device = torch.device(args.device or default_device())
    seconds = settings.audio_seconds(settings.AUDIO_LENGTH_S)
    bench = Bench(out=args.out, deadline=deadline, engine=Engine(model, device, seconds), command=command_line(argv),
                  model=model, device=device, seconds=seconds, ddim_steps=settings.steps(200),
                  dpm_steps=settings.steps(20),
                  settings_row={"smoke": settings.smoke_mode(), "cpu_profile": settings.cpu_profile(),
                                "checkpoint_build_s": round(build_s, 1)})
    status, code = "completed", 0
    try:
        with alarm_at(deadline):
            bench.run()
    except DeadlineReached as stop:
        status = str(stop)
    except CourseError as error:  # a set-up problem: one line that says what to do
        status, code = f"could not start: {error}", 2
        print(f"error: {error}", file=sys.stderr)
    except BaseException as error:  # a bug, or Ctrl-C: the file says so, then the traceback
        bench.write("end", status=f"failed: {type(error).__name__}: {error}", left_s=round(deadline.left_s(), 1))
        write_summary(args.out)
        raise
    bench.write("end", status=status, left_s=round(deadline.left_s(), 1))
    summary = write_summary(args.out)
    print(f"{status}; results: {bench.path}; summary: {summary}", flush=True)
    return code
