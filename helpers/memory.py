"""Peak memory of a piece of work: what decides whether a clip fits on your GPU.

On CUDA we reset PyTorch's peak counters before the work and read them after: *allocated* is what
tensors used at the worst moment, *reserved* is what PyTorch's caching allocator held from the driver
(what ``nvidia-smi`` shows, and what runs out first). With no GPU we sample this process's resident
host memory (RSS) instead, a few hundred times a second, since no counter can be reset there.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import psutil
import torch

GIB = 1024**3


@dataclass
class PeakMemory:
    """Peak memory during one ``with peak_memory(...)`` block, in bytes; GPU fields are None on a CPU."""

    device: str
    gpu_allocated: int | None = None
    gpu_reserved: int | None = None
    host_rss: int | None = None

    @property
    def peak_gib(self) -> float:
        """The figure to compare: GPU reserved memory on CUDA, host RSS elsewhere."""
        peak = self.gpu_reserved if self.gpu_reserved is not None else self.host_rss
        return (peak or 0) / GIB

    def __str__(self) -> str:
        if self.gpu_reserved is not None:
            return (f"peak GPU memory {self.gpu_allocated / GIB:.2f} GiB allocated, "
                    f"{self.gpu_reserved / GIB:.2f} GiB reserved [{self.device}]")
        return f"peak host memory (RSS) {self.peak_gib:.2f} GiB [{self.device}]"


class _RssSampler(threading.Thread):
    """Samples this process's RSS in the background and keeps the highest value seen."""

    def __init__(self, interval_s: float = 0.005):
        super().__init__(daemon=True)
        self.process, self.interval_s = psutil.Process(), interval_s
        self.peak = self.process.memory_info().rss
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.peak = max(self.peak, self.process.memory_info().rss)


@contextmanager
def peak_memory(device: torch.device | str) -> Iterator[PeakMemory]:
    """Measure peak memory of the block. The result is filled in when the block ends::

        with peak_memory("cuda") as memory:
            pipe(prompt)
        print(memory)
    """
    device = torch.device(device)
    result = PeakMemory(device=str(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result.gpu_allocated = torch.cuda.max_memory_allocated(device)
        result.gpu_reserved = torch.cuda.max_memory_reserved(device)
        return
    sampler = _RssSampler()
    sampler.start()
    try:
        yield result
    finally:
        sampler.stopped.set()
        sampler.join()
        result.host_rss = max(sampler.peak, sampler.process.memory_info().rss)
