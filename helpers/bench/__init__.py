"""The course's measurements in one process, with a deadline: ``python -m helpers.bench --deadline 480 --out DIR``.

Made for a short turn on a GPU, where nothing may be lost when the time is up, and read in four parts:

* :mod:`helpers.bench.schedule`: the deadline, what each item will cost (learned from what was measured, the
  eager and the compiled UNet apart), the host's yardstick that scales the compile's prior;
* :mod:`helpers.bench.items`: what is measured, in priority order: the compiled recipe first (rungs 6, 5 and 7
  with their stage splits), then the blog's eager rungs 1-4 (extrapolated from two short step counts), then
  notebook 10's changes each alternated with its baseline, the schedulers, the throughput;
* :mod:`helpers.bench.engine`: the device work itself (load, compile, time, split), which a test replaces;
* :mod:`helpers.bench.summary`: ``summary.md``, from the results file alone.

Each row goes to ``DIR/results.jsonl`` (one JSON object per line, flushed and synced, with its time stamp) the
moment it exists, so a run stopped at any moment leaves a valid file; ``DIR/summary.md`` is written again after
every item. An item that would not end before the deadline is skipped, and the summary says so. On a GPU the
settings are the blog's (10.24 s clips, DDIM 200, DPM-Solver++ 20); elsewhere :mod:`helpers.settings` applies.
"""

from helpers.bench.command import main
from helpers.bench.engine import Change, Clip, Engine
from helpers.bench.items import Bench, short_counts
from helpers.bench.schedule import (CostModel, Deadline, DeadlineReached, StepCosts, alarm_at, compile_prior_s,
                                    fit_step_costs, host_yardstick_s, repeats_that_fit)
from helpers.bench.summary import RESULTS_FILE, SUMMARY_FILE, summarize, write_summary

__all__ = ["Bench", "Change", "Clip", "CostModel", "Deadline", "DeadlineReached", "Engine", "RESULTS_FILE",
           "SUMMARY_FILE", "StepCosts", "alarm_at", "compile_prior_s", "fit_step_costs", "host_yardstick_s", "main",
           "repeats_that_fit", "short_counts", "summarize", "write_summary"]
