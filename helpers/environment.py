"""What this machine is, and which known problems apply to it.

Printed at the top of every notebook: a speed figure means nothing without the device and library
versions next to it, and most "it does not run" reports come from a handful of known combinations.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from importlib import metadata

import torch

from helpers.compiling import compile_support
from helpers.loading import default_device
from helpers.precision import CpuFeatures, computes_natively

LIBRARIES = ("torch", "diffusers", "transformers", "accelerate")


@dataclass
class EnvironmentReport:
    """The report every notebook prints first: versions and device, then notes, then warnings.

    ``notes`` say what this device measures and what the course already handles; ``warnings`` only what would
    stop a lesson here and the course cannot fix (a library missing, ``torch.compile`` unable to run).
    """

    python: str
    versions: dict[str, str]
    device: str
    device_name: str
    cuda_capability: str | None = None
    gpu_free_gib: float | None = None
    gpu_total_gib: float | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"Python {self.python}"]
        tested = tested_versions()
        for name, version in self.versions.items():
            differs = name in tested and version.split("+")[0] != tested[name]
            lines.append(f"{name} {version}" + (f" (the course's tests ran {name} {tested[name]})" if differs else ""))
        lines.append(f"device: {self.device} ({self.device_name})")
        if self.cuda_capability:
            lines.append(f"CUDA capability {self.cuda_capability}; GPU memory free "
                         f"{self.gpu_free_gib:.1f} of {self.gpu_total_gib:.1f} GiB")
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"WARNING: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def tested_versions() -> dict[str, str]:
    """The exact versions the course pins (its tests run them): ``{"torch": "2.13.0", "diffusers": ...}``.

    Read from the installed course's own metadata, so that they cannot drift from ``pyproject.toml``. On Colab
    torch is the runtime's own, so the report says when it is not the one the course was tested with.
    """
    from packaging.requirements import Requirement

    try:
        requirements = [Requirement(text) for text in metadata.requires("audioldm2-faster") or []]
    except metadata.PackageNotFoundError:  # helpers imported from a checkout that was never installed
        return {}
    return {r.name: str(r.specifier)[2:] for r in requirements
            if len(r.specifier) == 1 and str(r.specifier).startswith("==")}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _major_minor(version: str) -> tuple[int, int]:
    parts = [int("".join(c for c in part if c.isdigit()) or 0) for part in version.split(".")[:2]]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def known_problems(versions: dict[str, str], compile_check: tuple[bool, str] = (True, "")) -> list[str]:
    """Warnings: what would stop a lesson on this machine and the course cannot fix for you.

    ``compile_check`` is :func:`helpers.compiling.compile_support`'s answer for this device. A problem the course
    works around (the GPT2Model one) is a note (:func:`device_notes`), not a warning.
    """
    problems = [f"{name} is not installed: run the set-up cell (Colab) or the README's set-up."
                for name in LIBRARIES if versions.get(name) == "not installed"]
    compiles, reason = compile_check
    if not compiles:
        problems.append(f"torch.compile cannot run here (notebook 05 says so and goes on eager): {reason}")
    return problems


def device_notes(versions: dict[str, str], device: str, capability: tuple[int, int] | None = None,
                 cpu: CpuFeatures | None = None) -> list[str]:
    """Notes: which lessons this device measures and which it only explains, and what the course already fixes.

    ``capability`` (a CUDA GPU's) and ``cpu`` (a CPU's instructions) default to this machine's, so a test can ask
    about a T4 or a CPU without AVX512-BF16 anywhere. Each line must be true of that device: a reader decides from
    it whether to switch runtime.
    """
    notes = []
    transformers = versions.get("transformers", "not installed")
    if transformers != "not installed" and _major_minor(transformers) >= (4, 50):
        notes.append(f"transformers {transformers}: the hub checkpoints' bare GPT2Model lacks the generation helpers "
                     "the pipeline calls (since 4.50); h.load_pipeline loads it as GPT2LMHeadModel, which fixes that "
                     "(notebook 00, section 3).")
    notes.append(_half_precision_note(device, capability, cpu))
    if device != "cuda":
        notes.append("no CUDA GPU: every notebook runs; CUDA graphs (mode=\"reduce-overhead\": rung 5 of 08, the "
                     "compiled group of 10), TF32 and CPU offload (07) need one, so they are explained, not measured.")
    return notes


def _half_precision_note(device: str, capability: tuple[int, int] | None, cpu: CpuFeatures | None) -> str:
    """One line: the half precision this device computes, and where the course measures it (``helpers.precision``
    decides, so the report and the notebooks cannot disagree)."""
    bfloat16 = computes_natively(device, torch.bfloat16, capability=capability, cpu=cpu)
    if device == "cuda" and bfloat16:
        return ("half precision: this GPU computes float16 and bfloat16 (CUDA capability 8.0 or more): the course "
                "runs float16, as the blog did, and notebooks 04 and 10 measure bfloat16 too.")
    if device == "cuda":
        major, minor = capability if capability is not None else torch.cuda.get_device_capability()
        return (f"half precision: this GPU (CUDA capability {major}.{minor}) computes float16, the course's half "
                "precision here; bfloat16 it only emulates (that needs 8.0: an A100, an L4, an H100), so 04 and 10 "
                "leave it out. FlashAttention needs 8.0 too: notebook 03 shows which SDPA kernel runs instead.")
    if device == "mps":
        return "half precision: the Apple GPU computes float16, which notebooks 04 and 08 measure; bfloat16 is left out."
    if bfloat16:
        features = cpu or CpuFeatures.of_this_machine()
        names = " and ".join(name for name, has in (("AVX512-BF16", features.avx512_bf16), ("AMX", features.amx)) if has)
        return (f"half precision: this CPU computes bfloat16 ({names}), so notebooks 04, 08 and 10 measure it; "
                "float16 is emulated on every CPU and not timed.")
    return ("half precision: this CPU has neither AVX512-BF16 nor AMX, so bfloat16 (and float16, on any CPU) would "
            "be emulated, slower than float32: notebooks 04, 08 and 10 stay in float32 and say why.")


def quiet_cpu_profiler() -> None:
    """Keep torch's profiler from printing "USDT: ... profiler_start" and "profiler_stop" on every run on a CPU.

    torch 2.13's profiler library (kineto) writes those two lines to the process's stderr each time a
    ``torch.profiler.profile`` starts and stops: red lines under a cell that say nothing to a learner. Only
    ``KINETO_LOG_LEVEL=6`` (above all of kineto's levels) silences them, and it silences kineto's errors too, which
    on a GPU explain a profile without CUDA events (CUPTI's), so this is done where there is no CUDA GPU, and
    never over a value you set yourself. ``import helpers`` calls it.
    """
    if not torch.cuda.is_available():
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")


def environment_report() -> EnvironmentReport:
    """Collect the report from this machine (print it to read it)."""
    device = default_device()
    versions = {name: _version(name) for name in LIBRARIES}
    report = EnvironmentReport(python=platform.python_version(), versions=versions, device=device,
                               device_name=platform.processor() or platform.machine())
    capability = None
    if device == "cuda":
        capability = torch.cuda.get_device_capability()
        free, total = torch.cuda.mem_get_info()
        report.device_name = torch.cuda.get_device_name()
        report.cuda_capability = f"{capability[0]}.{capability[1]}"
        report.gpu_free_gib, report.gpu_total_gib = free / 1024**3, total / 1024**3
    report.notes = device_notes(versions, device, capability)
    report.warnings = known_problems(versions, compile_support(device))
    return report
