"""How far from the limit: each stage's floating-point operations, against what this device can do (notebook 09).

A stage that does many operations per second of its time is compute-bound: only fewer operations (fewer steps,
smaller numbers) make it faster. A stage that does few is waiting, on kernel launches or on memory, and
launch-side fixes (CUDA graphs, batching, fusion) help it. ``torch.utils.flop_counter.FlopCounterMode`` counts
the operations of the matrix products and convolutions as they run; a large matrix product measures the peak.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers.stages import STAGES, stage_modules
from helpers.timing import synchronize


def stage_flops(pipe, generate: Callable[[], object]) -> dict[str, float]:
    """Floating-point operations of each stage (:data:`helpers.stages.STAGES`) in one ``generate()`` call.

    Counts matrix products, convolutions and attention (what ``FlopCounterMode`` knows); element-wise work is
    left out, so the figure is a lower bound, and the part that matters.
    """
    counter = FlopCounterMode(display=False)
    flops = {stage: 0.0 for stage in STAGES}
    entered: dict[int, int] = {}
    handles = []

    def before(module, args):
        entered[id(module)] = counter.get_total_flops()

    def after_for(stage: str):
        def after(module, args, output):
            flops[stage] += counter.get_total_flops() - entered.pop(id(module))
        return after

    for stage, _, module in stage_modules(pipe):
        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after_for(stage))]
    try:
        with counter:
            generate()
    finally:
        for handle in handles:
            handle.remove()
    return flops


def peak_flops_per_s(device: torch.device | str, dtype: torch.dtype = torch.float32, *, size: int = 4096,
                     repeats: int = 10, trials: int = 3) -> float:
    """This device's floating-point operations per second on a large square matrix product in ``dtype``.

    What the chip really reaches, not the data sheet: the yardstick for each stage's rate. The best of
    ``trials`` timings, since anything else running on the machine can only make one slower.
    """
    device = torch.device(device)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up: library loading, kernel choice
    best_s = float("inf")
    for _ in range(trials):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best_s = min(best_s, time.perf_counter() - start)
    return 2 * size**3 * repeats / best_s


PEAK_MATRIX_SIZE = 4096  # large enough for a GPU's tensor cores and a CPU's vector units to reach their rate
SMOKE_PEAK_MATRIX_SIZE = 256  # a smoke run checks that the code runs: a small product, in a moment


def peak_matrix_size(smoke: bool | None = None) -> int:
    """The side of the square matrices :func:`peak_flops_per_s` multiplies in this run.

    A peak needs a large product (:data:`PEAK_MATRIX_SIZE`); a smoke run measures nothing and takes a small one.
    ``smoke``: ``None`` asks :func:`helpers.settings.smoke_mode`.
    """
    from helpers import settings

    smoke = settings.smoke_mode() if smoke is None else smoke
    return SMOKE_PEAK_MATRIX_SIZE if smoke else PEAK_MATRIX_SIZE
