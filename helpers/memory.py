"""Peak memory of a piece of work: what decides whether a clip fits on your GPU.

On CUDA we empty PyTorch's cache and reset its peak counters before the work, and read them after:
*allocated* is what tensors used at the worst moment, *reserved* is what PyTorch's caching allocator held
from the driver (what ``nvidia-smi`` shows, and what runs out first); notebook 07 shows these calls. With no
GPU we sample this process's resident host memory (RSS) instead, a few hundred times a second, since no
counter can be reset there.

When a generation does not fit, ``explain_out_of_memory`` turns the out-of-memory error into a message
that says what to do, and frees what the failed call held so that the next cell can run.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import psutil
import torch

from helpers import errors

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
        """The figure to compare: GPU reserved memory on CUDA (on MPS: what the Metal driver holds), else host RSS."""
        peak = self.gpu_reserved if self.gpu_reserved is not None else self.host_rss
        return (peak or 0) / GIB

    def __str__(self) -> str:
        if self.gpu_reserved is not None:
            held = "held by the Metal driver" if self.device.startswith("mps") else "reserved"
            return (f"peak GPU memory {self.gpu_allocated / GIB:.2f} GiB allocated, "
                    f"{self.gpu_reserved / GIB:.2f} GiB {held} [{self.device}]")
        return f"peak host memory (RSS) {self.peak_gib:.2f} GiB [{self.device}]"


def current_rss() -> int:
    """This process's resident memory (RSS) now, in bytes."""
    return psutil.Process().memory_info().rss


class HostMemorySampler(threading.Thread):
    """Reads host memory in the background, every ``interval_s``, and keeps the highest reading.

    ``read_bytes`` is what it reads: this process's RSS by default; on a Mac, torch's MPS counters (which have
    no peak of their own); in a test, whatever the test hands in.
    """

    def __init__(self, read_bytes: Callable[[], int] = current_rss, interval_s: float = 0.005):
        super().__init__(daemon=True)
        self.read_bytes, self.interval_s = read_bytes, interval_s
        self.peak = read_bytes()
        self.stopped = threading.Event()

    def sample(self) -> int:
        """Take one reading now; returns it."""
        reading = self.read_bytes()
        self.peak = max(self.peak, reading)
        return reading

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.sample()

    def stop(self) -> int:
        """Stop sampling, take a last reading, and return the peak."""
        self.stopped.set()
        self.join()
        self.sample()
        return self.peak


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
        torch.cuda.empty_cache()  # else "reserved" could not read below what an earlier, bigger run left cached
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result.gpu_allocated = torch.cuda.max_memory_allocated(device)
        result.gpu_reserved = torch.cuda.max_memory_reserved(device)
        return
    if device.type == "mps":  # tensors live in Metal buffers, which the RSS does not count, and MPS keeps no peak
        torch.mps.synchronize()
        torch.mps.empty_cache()
        allocated = HostMemorySampler(read_bytes=torch.mps.current_allocated_memory)
        held = HostMemorySampler(read_bytes=torch.mps.driver_allocated_memory)
        allocated.start()
        held.start()
        try:
            yield result
        finally:
            torch.mps.synchronize()
            result.gpu_allocated, result.gpu_reserved = allocated.stop(), held.stop()
        return
    sampler = HostMemorySampler()
    sampler.start()
    try:
        yield result
    finally:
        result.host_rss = sampler.stop()


# --------------------------------------------------------------------------------------------
# When a generation does not fit
# --------------------------------------------------------------------------------------------
OUT_OF_MEMORY_ADVICE = (
    "What to do, cheapest first:\n"
    "  - shorter audio: a smaller audio_length_in_s (memory grows with the clip's length);\n"
    "  - fewer waveforms: a smaller num_waveforms_per_prompt (each one is another full clip in the batch);\n"
    "  - half precision on a GPU: load_pipeline(torch_dtype=torch.float16, ...) halves weights and activations;\n"
    "  - pipe.enable_model_cpu_offload() on a GPU: only the model that is running stays on the GPU "
    "(needs accelerate; costs some time);\n"
    "  - a bigger GPU (Colab: Runtime > Change runtime type), or several shorter clips instead of one long one."
)


def _is_out_of_memory(error: BaseException) -> bool:
    """``torch.OutOfMemoryError`` (CUDA), or the RuntimeError the MPS and CPU allocators raise when full."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def empty_device_cache(device: torch.device | str) -> None:
    """Give the memory PyTorch's caching allocator keeps for reuse back to the GPU (a no-op on a CPU)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def explain_out_of_memory(
    device: torch.device | str = "cuda", *, what: str = "This generation", reraise: bool = True
) -> ContextManager[errors.Failure]:
    """Turn an out-of-memory error in the block into a message that says what to do::

        with explain_out_of_memory(device, what="4 clips of 150 s", reraise=False) as oom:
            audios = pipe(prompt, audio_length_in_s=150, num_waveforms_per_prompt=4).audios
        if oom.happened:
            ...  # the message has been printed; the GPU's memory is free again

    It catches ``torch.OutOfMemoryError`` (what CUDA raises; ``torch.cuda.OutOfMemoryError`` is the same class)
    and the RuntimeError of the MPS and CPU allocators. Why it matters: the tensors of a failed call stay
    alive as long as its traceback does, so without clean-up the *next* cell runs out of memory too. So the
    failed call's frames are cleared, garbage is collected and the device's cache emptied; then, with
    ``reraise=True`` (the default), :class:`~helpers.errors.DoesNotFitError` is raised with the advice;
    with ``reraise=False`` the advice is printed, ``happened`` is set and the code after the block goes on.
    Any other exception passes through unchanged (:func:`helpers.errors.explained` does the work).
    """
    device = torch.device(device)

    def clean_up() -> None:
        gc.collect()
        empty_device_cache(device)

    def describe(error: BaseException) -> str:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        where = "GPU" if device.type in ("cuda", "mps") else "host"
        message = f"{what} ran out of {where} memory on {device} ({detail})."
        if device.type == "cuda" and torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info(device)
            message += f" After clean-up: {free / GIB:.1f} GiB free of {total / GIB:.1f} GiB."
        return f"{message}\n{OUT_OF_MEMORY_ADVICE}"

    return errors.explained(_is_out_of_memory, describe, errors.DoesNotFitError, reraise=reraise, clean_up=clean_up)


# --------------------------------------------------------------------------------------------
# How long a clip fits, asked before a long job starts
# --------------------------------------------------------------------------------------------
TRIAL_LENGTHS_S = (2.56, 5.12)  # two short one-step calls: a few seconds on a CPU, a fraction of one on a GPU
MEMORY_MARGIN = 0.9  # keep a tenth free: the allocator's fragments, compiled graphs, the desktop


@dataclass
class MemoryLine:
    """Peak memory of one pipeline call against clip length, ``base + per_second * length`` GiB, and the room.

    Every layer that runs at the clip's resolution (the UNet's latents, the VAE decoder, the vocoder) holds
    activations in proportion to the length; the weights and the text encoders do not. So two short trial
    calls draw the line, and the line says how long a clip fits, without trying one that does not.
    """

    base_gib: float
    per_second_gib: float
    room_gib: float  # what the peak may reach on this device, for this process

    def needs_gib(self, length_s: float) -> float:
        return self.base_gib + self.per_second_gib * length_s

    def fits(self, length_s: float) -> bool:
        return self.needs_gib(length_s) <= self.room_gib

    def largest_length_s(self) -> float:
        return max(0.0, (self.room_gib - self.base_gib) / self.per_second_gib)

    def __str__(self) -> str:
        return (f"about {self.base_gib:.2f} GiB + {self.per_second_gib * 1024:.1f} MiB per second of audio, "
                f"of {self.room_gib:.1f} GiB: up to about {self.largest_length_s():,.0f} s fits")


def fit_memory_line(
    peak_gib_at: Callable[[float], float],
    room_gib: Callable[[], float],
    least_per_second_gib: float = 0.0,
    lengths_s: tuple[float, float] = TRIAL_LENGTHS_S,
) -> MemoryLine:
    """The straight line through the peaks at two lengths (``peak_gib_at(length)`` measures one).

    ``room_gib()`` is read after the trials, once the weights are resident. ``least_per_second_gib`` is a floor
    for the slope that needs no measuring (the output waveform itself): host memory readings are coarse, and a
    slope read as zero would let any length through.
    """
    short, long = sorted(lengths_s)
    peak_short, peak_long = peak_gib_at(short), peak_gib_at(long)
    per_second = max((peak_long - peak_short) / (long - short), least_per_second_gib, 1e-9)
    return MemoryLine(base_gib=peak_long - per_second * long, per_second_gib=per_second, room_gib=room_gib())


def room_for_peak_gib(device: torch.device | str, processes_here: int = 1) -> float:
    """How high this process's peak (as :class:`PeakMemory` reads it) may go on ``device``, with the margin.

    CUDA: what the driver has free plus what PyTorch already holds. MPS: the Metal working set macOS
    recommends. CPU: this process's own memory plus its share of the host's available memory (the other
    processes of an ``accelerate launch`` on this machine need theirs).
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        room = free + torch.cuda.memory_reserved(device)
    elif device.type == "mps" and hasattr(torch.mps, "recommended_max_memory"):  # torch >= 2.5
        room = torch.mps.recommended_max_memory()
    else:  # a CPU, or unified memory on an older torch for MPS
        # The weights are mapped from the checkpoint's files: those pages count in the RSS and, since the kernel
        # can reread them, in `available` too. Count them once.
        resident = psutil.Process().memory_info()
        own = resident.rss - getattr(resident, "shared", 0)  # "shared" is Linux's file-backed and shared RSS
        room = own + psutil.virtual_memory().available / max(processes_here, 1)
    return MEMORY_MARGIN * room / GIB


def what_peak_memory_reads(device: torch.device | str) -> str:
    """One line on what :func:`peak_memory` read on ``device``, to print under a comparison of peaks.

    Why: the same figure means different things. On CUDA it is an exact counter of PyTorch's allocator; elsewhere
    it is a reading sampled every few milliseconds (the whole process's RSS on a CPU, the Metal driver's memory on
    a Mac), in which a small difference between two runs is noise, not a finding.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return ("peak memory: what PyTorch's allocator reserved on the GPU at the worst moment "
                "(torch.cuda.max_memory_reserved), an exact counter")
    if kind == "mps":
        return ("peak memory: what the Metal driver held, sampled every few milliseconds (MPS keeps no peak): "
                "a small difference is within its noise")
    return ("peak memory: the whole process's resident memory (RSS), sampled every few milliseconds: a small "
            "difference is within its noise")
