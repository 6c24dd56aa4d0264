"""The summary of a benchmark run, written from its results file alone (``python -m helpers.bench --summarize``).

It reads like the course's tables: each row says whether the UNet ran eager or compiled, how the figure was got
(measured, or extrapolated from two short step counts), and when; a difference no larger than the noise (the
larger of the two runs' spreads) reads "within noise"; the targets are judged on a compiled last rung only, and
name the device and host they apply to.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from helpers.results import read_rows
from helpers.settings import AUDIO_LENGTH_S
from helpers.stages import StepProfile
from helpers.timing import speedup_text

RESULTS_FILE, SUMMARY_FILE = "results.jsonl", "summary.md"
TARGET_SPEEDUP = 100.0  # the ladder's targets: the last rung >= 100x rung 1 ...
TARGET_CLIP_MS = 60.0  # ... and a 10.24 s clip in 60 ms or less on an H100 or H200, prompt encoding included
TARGET_RUNG8_MS = 30.0  # rung 8 (approximations: 10 steps, deep features reused) in 30 ms or less there


def versions() -> dict[str, str]:
    """The versions that decide a speed figure, and torchao's and triton's if installed."""
    import torch

    found = {"torch": torch.__version__, "cuda": torch.version.cuda or "none",
             "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none"}
    for name in ("diffusers", "transformers", "accelerate", "numpy", "torchao", "triton"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return "" if value is None else str(value)
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(cell(value) for value in row) + " |" for row in rows), ""]


def _clock(row: dict) -> str:
    """The row's time of day (UTC), from its time stamp."""
    return row.get("at", "")[11:19]


def _header(machine: dict, load: dict | None, end: dict | None) -> list[str]:
    status = ("completed" if end and end.get("status") == "completed" else
              f"stopped: {end['status']}" if end else "still running, or stopped from outside (no end row)")
    kind = load["checkpoint_kind"] if load else "not loaded yet"
    kind_text = {"real": "real (trained weights)", "full-size": "full-size random weights (the real shapes: real "
                 "speed and memory; noise for sound)", "tiny": "tiny random weights (a dry run: its timings say "
                 "nothing about the real model)"}.get(kind, kind)
    profile = (" (smoke mode: measures nothing)" if machine.get("smoke") else
               " (CPU profile)" if machine.get("cpu_profile") else " (full settings)")
    device = machine["device_name"] + (f", CUDA capability {machine['cuda_capability']}, "
                                       f"{machine['gpu_memory_gib']} GiB" if "cuda_capability" in machine else "")
    return [f"- **command**: `{machine['command']}`",
            f"- **device**: {device}",
            f"- **host**: {machine.get('host_cpu', 'unknown CPU')}, {machine['cpu_count']} cores; Python "
            f"{machine['python']}; host yardstick {machine.get('host_yardstick_s', '?')} s (smaller is faster; "
            "a GPU's figures depend on the host wherever the host waits)",
            f"- **versions**: {', '.join(f'{name} {version}' for name, version in machine['versions'].items())}",
            f"- **model**: `{machine['model']}`: {kind_text}",
            f"- **settings**: {machine['audio_seconds']} s clips, DDIM {machine['ddim_steps']}, DPM-Solver++ "
            f"{machine['dpm_steps']}{profile}",
            f"- **run**: started {machine['started_at']}, deadline {machine['deadline_s']} s; {status}"
            + (f" after {end['t_s']:.0f} s" if end else ""), ""]


def _rung(ladder: list[dict], number: int) -> dict | None:
    return next((row for row in ladder if row["rung"] == number), None)


def relative_noise(ladder: list[dict], rows: list[dict]) -> float:
    """The ladder's noise floor as a fraction of a median, from rung 6 measured twice (before and after rung 7).

    The rungs run from seconds to tens of milliseconds, so one floor in seconds fits none of them; the repeated rung
    says how far apart two measurements of the same work land on this machine, as a share of the time. 0 when the
    run had no time to repeat it.
    """
    repeat = next((row for row in rows if row.get("section") == "ladder repeat" and row.get("kind") == "measurement"),
                  None)
    first = _rung(ladder, 6)
    if repeat is None or first is None:
        return 0.0
    gap = abs(repeat["median_s"] - first["median_s"])
    return max(gap, repeat["spread_s"], first["spread_s"]) / first["median_s"]


def _ladder(rows: list[dict], machine: dict) -> list[str]:
    ladder = sorted((row for row in rows if row.get("kind") == "measurement" and row.get("section") == "ladder"),
                    key=lambda row: row["rung"])
    if not ladder:
        return []
    base = ladder[0]
    lines = ["## The ladder (notebook 08)", ""]
    relative = relative_noise(ladder, rows)
    table, previous = [], None
    for row in ladder:
        versus_previous = ""
        if previous is not None:
            noise = max(previous["spread_s"], row["spread_s"], relative * previous["median_s"])
            versus_previous = speedup_text(previous["median_s"], row["median_s"], noise)
            if previous["rung"] != row["rung"] - 1:
                versus_previous += f" (vs rung {previous['rung']})"
        table.append([row["configuration"], row.get("unet"), row["dtype"], row["steps"], row.get("method"),
                      row["median_s"], row["spread_s"], f"{base['median_s'] / row['median_s']:.1f}x",
                      versus_previous, row.get("first_call_s"), row["peak_memory_gib"], _clock(row)])
        previous = row
    lines += _table(["rung", "UNet", "dtype", "steps", "how", "median s", "spread s", "speed-up", "x previous",
                     "first call s", "peak GiB", "at (UTC)"], table)
    repeat = next((row for row in rows if row.get("section") == "ladder repeat" and row.get("kind") == "measurement"),
                  None)
    floor = (f"rung 6 measured again after rung 7 ({repeat['median_s']:.3g} s against {_rung(ladder, 6)['median_s']:.3g} s"
             f"): a noise floor of {relative:.1%} of a median" if repeat and _rung(ladder, 6) else
             "no repeated rung this run: the floor is the larger spread alone")
    lines.append(f"\"x previous\" reads \"within noise\" where the two medians differ by no more than the noise floor: "
                 f"the larger spread of the two, or {floor}, whichever is larger. An extrapolated rung was timed at two short DDIM counts; its figure is the straight line "
                 "through them read at the full count, its spread the range of the readings of each pair of runs.")
    lines.append("")
    lines += _targets(ladder, machine) + [""]
    check = next((row for row in rows if row.get("section") == "ladder check" and row.get("kind") == "measurement"),
                 None)
    if check and ladder[0]["rung"] == 1:
        lines += [f"Check of the extrapolation: rung 1 run once at {check['steps']} steps took {check['median_s']:.3g} s;"
                  f" extrapolated: {ladder[0]['median_s']:.3g} s.", ""]
    compiled = next((row for row in rows if row.get("kind") == "compile"), None)
    if compiled:
        lines += [f"The first compiled call ({compiled['what']}, {compiled['steps']} steps, one clip included) took "
                  f"{compiled['first_call_s']:.1f} s on this host (the prior for a cold compile, scaled by the host "
                  f"yardstick: {compiled['prior_s']} s); the compile cache ({compiled.get('cache_folder', '?')}): "
                  f"{compiled.get('cache', 'not recorded')}.", ""]
    recompiles = next((row for row in rows if row.get("kind") == "recompiles"), None)
    if recompiles:
        lines += [f"Rung 5 (DDIM) on the UNet compiled at DPM-Solver++: {recompiles['new_graphs']} new graphs: "
                  f"{recompiles['note']}.", ""]
    return lines


def _targets(ladder: list[dict], machine: dict) -> list[str]:
    """The targets, judged on the compiled recipe: the last exact rung (7, the same audio as rung 6) for the ladder's
    speed-up and the 60 ms clip, rung 8 (approximations, labelled) for the 30 ms clip."""
    exact = [row for row in ladder if row["rung"] <= 7]
    last, first = (exact or ladder)[-1], ladder[0]
    where = f"{machine['device_name']} (host: {machine.get('host_cpu', 'unknown CPU')})"
    if last.get("unet") != "compiled":
        return [f"**Targets**: not judged: the last rung measured, {last['configuration']}, ran with an eager UNet on "
                f"{where}; the targets are for the compiled recipe on an H100/H200."]
    if first["rung"] != 1:
        return [f"**Targets**: not judged: rung 1 was not measured on {where}."]
    ratio = first["median_s"] / last["median_s"]
    length = last["audio_seconds"]

    def clip(row: dict, target_ms: float) -> str:
        if length != AUDIO_LENGTH_S:
            return f"not judged: this run's clips are {length} s"
        return "met" if row["median_s"] * 1000 <= target_ms else "not met"

    lines = [f"**Targets**, on {where}: rung {last['rung']} (compiled) against rung 1: {ratio:.1f}x (target "
             f"{TARGET_SPEEDUP:.0f}x: {'met' if ratio >= TARGET_SPEEDUP else 'not met'}); one {length} s clip at rung "
             f"{last['rung']}, prompt encoding included: {last['median_s'] * 1000:.0f} ms (target {TARGET_CLIP_MS:.0f} "
             f"ms for a {AUDIO_LENGTH_S} s clip on an H100/H200: {clip(last, TARGET_CLIP_MS)}). Rung 1 is "
             f"{first.get('method', 'measured')}."]
    approximate = _rung(ladder, 8)
    if approximate is not None and approximate.get("unet") == "compiled":
        lines.append(f"Rung 8 (approximations, its audio differs): {approximate['median_s'] * 1000:.0f} ms, "
                     f"{first['median_s'] / approximate['median_s']:.1f}x rung 1 (target {TARGET_RUNG8_MS:.0f} ms: "
                     f"{clip(approximate, TARGET_RUNG8_MS)}).")
    return lines


def _stage_rows(split: dict, flops: dict | None, peaks: dict[str, float]) -> list[list]:
    peak = peaks.get(split.get("dtype", "float32"))
    rows = []
    for stage, seconds in [*split["seconds"].items(), ("not attributed (scheduler steps, tokenizers, Python)",
                                                       split["other_s"])]:
        work = None
        if flops and stage in flops["flops"]:
            work = flops["flops"][stage] * (split["steps"] / flops["steps"] if stage == "UNet" else 1)
        rate = work / seconds if work and seconds > 0 else None
        rows.append([stage, split["calls"].get(stage), seconds, f"{seconds / split['total_s']:.1%}",
                     work / 1e9 if work else None, rate / 1e12 if rate else None,
                     f"{rate / peak:.1%}" if rate and peak else None])
    rows.append(["one generation", None, split["total_s"], "100%", None, None, None])
    return rows


def _splits(rows: list[dict], peaks: dict[str, float]) -> list[str]:
    lines = []
    flops = {row["label"]: row for row in rows if row.get("kind") == "flops"}
    for split in (row for row in rows if row.get("kind") == "stages"):
        counted = flops.get(split["label"]) or flops.get("6")
        lines += [f"## Where rung {split['label']}'s time goes ({split.get('unet', '?')} UNet, {split['method']}, "
                  f"{split['dtype']}, {split['steps']} steps, at {_clock(split)} UTC)", ""]
        lines += _table(["stage", "calls", "seconds", "share", "GFLOP", "TFLOP/s", "of peak"],
                        _stage_rows(split, counted, peaks))
        lines.append(f"UNet per step {split['per_step_s']:.4f} s; the stages run once per clip "
                     f"{split['once_per_clip_s']:.3f} s; not attributed to a stage {split['other_s']:.3f} s (the "
                     "scheduler's steps among them). One more generation with every stage timed, beside the medians"
                     + ("; CUDA events include the GPU's idle time between a stage's kernels" if split["method"] ==
                        "CUDA events" else "") + ". FLOPs: matrix products, convolutions and attention, counted on "
                     "the eager modules (2 steps; the UNet's scaled to the split's steps).")
        lines.append("")
    return lines


def _profiles(rows: list[dict], peaks: dict[str, float]) -> list[str]:
    """Each profiled clip, per denoising step, and the step against its FLOP floor where the FLOPs were counted."""
    lines = []
    flops = {row["label"]: row for row in rows if row.get("kind") == "flops"}
    for row in (row for row in rows if row.get("kind") == "profile"):
        profile = StepProfile(**{name: row[name] for name in StepProfile.__dataclass_fields__})
        lines += [f"## One profiled clip of rung {row['label']} ({row.get('unet', '?')} UNet, {row['dtype']}, at "
                  f"{_clock(row)} UTC)", "", *str(profile).splitlines()]
        counted, peak = flops.get(row["label"]) or flops.get("6"), peaks.get(row["dtype"])
        if counted and peak and "UNet" in counted["flops"]:
            lines.append(profile.floor_line(counted["flops"]["UNet"] / counted["steps"], peak))
        lines += ["", "torch.profiler over one more generation (its own cost included): on a GPU, the kernels each "
                  "UNet call launched, placed by their launch, and everything the GPU ran from the loop's first "
                  "kernel to its last; on a CPU, PyTorch's outermost operators inside the UNet calls.", ""]
    return lines


def _techniques(rows: list[dict]) -> list[str]:
    techniques = [row for row in rows if row.get("kind") == "measurement" and row.get("section") == "techniques"]
    if not techniques:
        return []
    table = []
    for row in techniques:
        base = row["baseline_median_s"]
        base_spread = max(row["baseline_runs_s"]) - min(row["baseline_runs_s"])
        noise = max(base_spread, row["spread_s"])
        table.append([row["group"], row["configuration"], base, row["median_s"], noise,
                      speedup_text(base, row["median_s"], noise), len(row["runs_s"]), row["peak_memory_gib"],
                      _clock(row)])
    return ["## Notebook 10's changes, each alternated with its own baseline", "",
            *_table(["group", "change", "baseline s", "with the change s", "noise s", "vs its baseline", "pairs",
                     "peak GiB", "at (UTC)"], table),
            "Each change was run alternately with its baseline (base, change, base, change, ...), so that a drift of "
            "the machine touches both alike; the noise is the larger of the two spreads, and a difference no larger "
            "reads \"within noise\". A change marked \"changes the audio\" is an approximation. Peak memory is the "
            "change's own (what another pipeline held is subtracted); on a CPU it is the process's resident memory.",
            ""]


def summarize(rows: list[dict]) -> str:
    """The markdown summary of a results file's rows: what ran, on what, what it measured, what it skipped."""
    first = lambda kind: next((row for row in rows if row.get("kind") == kind), None)  # noqa: E731
    machine, load, end = first("machine"), first("load"), first("end")
    lines = ["# Benchmark: the course's measurements in one process", ""]
    if machine is None:
        return "\n".join(lines + ["Nothing was written yet."])
    lines += _header(machine, load, end)
    peaks = {row["dtype"]: row["tflops"] * 1e12 for row in rows if row.get("kind") == "peak"}
    if peaks:
        lines += ["## Measured peak of a matrix product", ""]
        lines += _table(["precision", "TFLOP/s"], [[name, value / 1e12] for name, value in peaks.items()])
    lines += _ladder(rows, machine)
    lines += _splits(rows, peaks)
    lines += _profiles(rows, peaks)
    lines += _techniques(rows)
    measurements = [row for row in rows if row.get("kind") == "measurement"]
    schedulers = [row for row in measurements if row.get("section") == "schedulers"]
    if schedulers:
        lines += ["## Fewer steps: DPM-Solver++ and UniPC", ""]
        lines += _table(["scheduler", "UNet", "steps", "median s", "spread s", "at (UTC)"],
                        [[row["scheduler"], row.get("unet"), row["steps"], row["median_s"], row["spread_s"],
                          _clock(row)] for row in schedulers])
    throughput = [row for row in measurements if row.get("section") == "throughput"]
    if throughput:
        lines += ["## Throughput against the batch (UNet eager, as notebook 11)", ""]
        lines += _table(["batch", "s per call", "spread s", "s per clip", "clips per s", "peak GiB", "at (UTC)"],
                        [[row["batch"], row["median_s"], row["spread_s"], row["median_s"] / row["batch"],
                          row["batch"] / row["median_s"], row["peak_memory_gib"], _clock(row)] for row in throughput])
    skipped = [row for row in rows if row.get("kind") == "skipped"]
    errors = [row for row in rows if row.get("kind") == "error"]
    lines += ["## Skipped", ""]
    lines += [f"- {row['item']}: {row['reason']}" for row in skipped] or ["- nothing"]
    lines.append("")
    if errors:
        lines += ["## Errors (each item that failed; the run went on)", ""]
        lines += [f"- {row['item']}: {row['error']}" for row in errors]
        lines.append("")
    notes = [row for row in measurements if row.get("note")]
    if notes:
        lines += ["## Notes", ""] + [f"- {row['configuration']}: {row['note']}" for row in notes] + [""]
    lines.append(f"Every row is in `{RESULTS_FILE}`, one JSON object per line, each with its time stamp.")
    return "\n".join(lines) + "\n"


def write_summary(out: Path) -> Path:
    """Write ``out/summary.md`` from ``out/results.jsonl`` (atomically: a reader never sees half of it)."""
    path = Path(out) / SUMMARY_FILE
    partial = path.with_suffix(".md.partial")
    partial.write_text(summarize(read_rows(Path(out) / RESULTS_FILE)))
    os.replace(partial, path)
    return path
