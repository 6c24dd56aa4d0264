"""What this machine is, and which known problems apply to it.

Printed at the top of every notebook: a speed figure means nothing without the device and library
versions next to it, and most "it does not run" reports come from a handful of known combinations.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata

import torch

from helpers.loading import default_device

LIBRARIES = ("torch", "diffusers", "transformers", "accelerate")


@dataclass
class EnvironmentReport:
    python: str
    versions: dict[str, str]
    device: str
    device_name: str
    cuda_capability: str | None = None
    gpu_free_gib: float | None = None
    gpu_total_gib: float | None = None
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


def known_problems(versions: dict[str, str], device: str, capability: tuple[int, int] | None) -> list[str]:
    """Warnings for combinations known to break or mislead, the GPT2Model one first."""
    problems = []
    if versions.get("transformers", "not installed") != "not installed" and _major_minor(versions["transformers"]) >= (4, 50):
        problems.append(
            "transformers >= 4.50: the hub checkpoints' GPT2Model language model has no generation helpers, so a "
            "plain AudioLDM2Pipeline.from_pretrained fails at the first call. helpers.load_pipeline loads it as "
            "GPT2LMHeadModel, which fixes it."
        )
    for name in LIBRARIES:
        if versions.get(name) == "not installed":
            problems.append(f"{name} is not installed: run the set-up cell (Colab) or the README's set-up.")
    if device == "cpu":
        problems.append("No GPU: every notebook runs, but slowly, and the GPU lessons (half precision, "
                        "torch.compile's CUDA graphs, offload) are explained rather than measured.")
    if capability is not None and capability < (8, 0):
        problems.append(f"CUDA capability {capability[0]}.{capability[1]} (< 8.0, e.g. a T4): no native bfloat16; "
                        "use float16. torch.compile's Triton kernels need capability 7.0 or more.")
    if sys.platform == "win32":
        problems.append("Windows: torch.compile's default backend is not supported; that notebook says so and goes on.")
    return problems


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
    """Collect the report (print it to read it)."""
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
    report.warnings = known_problems(versions, device, capability)
    return report
