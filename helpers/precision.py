"""Which half precision pays on a device, and in which form: the course's one decision (notebook 04 teaches it).

Two ways to compute in 16 bits, and they are not the same thing:

* **half-precision weights**: ``load_pipeline(torch_dtype=torch.float16)`` (or ``bfloat16``). Every weight and
  activation is 16 bits: half the memory, half the bytes to move, and the fast half-precision units do the work.
* **autocast over float32 weights**: ``with torch.autocast(device_type, dtype=torch.bfloat16):``. The weights
  stay float32 (no memory saved); matrix products and convolutions cast their inputs and run in bfloat16, while
  reductions and normalisations stay in float32. Safer numbers, one cast per operation.

Either pays only where the hardware computes that format natively; elsewhere it is *emulated* (converted to
float32 and back around every operation), which is slower than float32:

* a CUDA GPU computes float16 on every card the course meets, and bfloat16 from CUDA capability 8.0 (A100, L4,
  H100). A T4 (7.5) can store bfloat16 and emulates its arithmetic, yet ``torch.cuda.is_bf16_supported()``
  answers True there: it counts emulation unless asked ``including_emulation=False``;
* an Apple GPU computes float16;
* a CPU computes bfloat16 only with the AVX512-BF16 or AMX instructions (Intel Cooper Lake and Sapphire Rapids on,
  AMD Zen 4 on). oneDNN's own ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` answers True on any AVX-512 CPU,
  Skylake to Ice Lake servers included, which emulate it. No CPU the course meets computes float16.

Each function takes what it reads from the machine as an argument too, so that a test can ask about a T4, an A100
or a CPU without AVX512-BF16 on any machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from helpers import settings

NATIVE_BFLOAT16_CUDA_CAPABILITY = (8, 0)  # Ampere: bfloat16 tensor cores


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU instructions that decide whether bfloat16 is computed or emulated."""

    avx512_bf16: bool
    amx: bool

    @classmethod
    def of_this_machine(cls) -> "CpuFeatures":
        return cls(avx512_bf16=bool(torch.cpu._is_avx512_bf16_supported()),
                   amx=bool(torch.cpu._is_amx_tile_supported()))


def cpu_has_fast_bfloat16(features: CpuFeatures | None = None) -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX); ``features`` defaults to this machine's."""
    features = features or CpuFeatures.of_this_machine()
    return features.avx512_bf16 or features.amx


def cuda_has_fast_bfloat16(capability: tuple[int, int] | None = None) -> bool:
    """True on a CUDA GPU of capability 8.0 or more; ``capability`` defaults to the current GPU's."""
    if capability is None:
        capability = torch.cuda.get_device_capability()
    return tuple(capability) >= NATIVE_BFLOAT16_CUDA_CAPABILITY


def computes_natively(device: torch.device | str, dtype: torch.dtype, *, capability: tuple[int, int] | None = None,
                      cpu: CpuFeatures | None = None) -> bool:
    """Does ``device`` compute ``dtype`` (float16 or bfloat16) natively, rather than emulate it?"""
    kind = torch.device(device).type
    if dtype == torch.float32:
        return True
    if kind == "cuda":
        return dtype == torch.float16 or cuda_has_fast_bfloat16(capability)
    if kind == "mps":
        return dtype == torch.float16
    if kind == "cpu":
        return dtype == torch.bfloat16 and cpu_has_fast_bfloat16(cpu)
    return False


def half_precision_for(device: torch.device | str, *, capability: tuple[int, int] | None = None,
                       cpu: CpuFeatures | None = None) -> torch.dtype | None:
    """The half type the course loads the weights in on ``device``: float16 on a GPU, bfloat16 on a CPU that
    computes it, None where neither pays (then the pipeline stays float32)."""
    kind = torch.device(device).type
    if kind in ("cuda", "mps"):
        return torch.float16
    if kind == "cpu" and computes_natively(device, torch.bfloat16, cpu=cpu):
        return torch.bfloat16
    return None


def ladder_dtype(device: torch.device | str, *, capability: tuple[int, int] | None = None,
                 cpu: CpuFeatures | None = None) -> torch.dtype:
    """The dtype every notebook after 04 loads on ``device``, and that notebook 08's ladder ends on and 10 starts from.

    :func:`half_precision_for` where a half precision pays (float16 on a GPU, bfloat16 on a CPU that computes
    it), float32 elsewhere. One function, so that no notebook measures over a rung the ladder has left.
    """
    return half_precision_for(device, capability=capability, cpu=cpu) or torch.float32


def half_precision_runs_here(device: torch.device | str, torch_dtype: torch.dtype = torch.float16, *,
                             capability: tuple[int, int] | None = None, cpu: CpuFeatures | None = None) -> bool:
    """Whether the notebooks measure weights in ``torch_dtype`` on ``device``: where it is computed natively.

    The course's own tests set ``AUDIOLDM2_TESTS_HALF_ON_CPU=1`` so that CI, which has no GPU, runs the
    half-precision code of the notebooks on its CPU (slow kernels, right results).
    """
    if torch.device(device).type == "cpu" and settings.tests_allow_half_on_cpu():
        return True
    return computes_natively(device, torch_dtype, capability=capability, cpu=cpu)


def why_not(device: torch.device | str, dtype: torch.dtype, *, capability: tuple[int, int] | None = None,
            cpu: CpuFeatures | None = None) -> str:
    """One sentence on why ``dtype`` does not pay on ``device`` (for a message, or a skipped measurement)."""
    kind = torch.device(device).type
    name = str(dtype).removeprefix("torch.")
    if kind == "cpu" and dtype == torch.float16:
        return ("no CPU the course meets computes float16: it would be emulated, slower than float32 (diffusers "
                "only warns when a float16 pipeline moves to a CPU). On a CPU the half type is bfloat16, where the "
                "CPU has it.")
    if kind == "cpu":
        return ("this CPU has neither AVX512-BF16 nor AMX, so bfloat16 would be emulated, slower than float32 "
                "(measured: 1.9x slower per UNet step on an AVX-512 CPU without them). Stay in float32 here.")
    if kind == "cuda":
        capability = capability or torch.cuda.get_device_capability()
        return (f"this GPU (CUDA capability {capability[0]}.{capability[1]}) emulates "
                f"{name}: bfloat16 needs capability 8.0 or more (an A100, an L4, an H100). Use float16.")
    return f"{kind} does not compute {name} natively here; float16 is the Apple GPU's half type."


def bfloat16_autocast_pays(device: torch.device | str, dtype: torch.dtype, *, cpu: CpuFeatures | None = None) -> bool:
    """True for a float32 pipeline on a CPU that computes bfloat16: autocast runs its heavy arithmetic in bfloat16.

    A GPU loads half-precision weights instead (float16), and a pipeline already in half precision has nothing
    for autocast to do.
    """
    return (torch.device(device).type == "cpu" and dtype == torch.float32
            and computes_natively(device, torch.bfloat16, cpu=cpu))


def autocast_for(device: torch.device | str, dtype: torch.dtype):
    """bfloat16 autocast where :func:`bfloat16_autocast_pays`; a context that does nothing anywhere else."""
    if bfloat16_autocast_pays(device, dtype):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def tf32(enabled: bool = True) -> Iterator[None]:
    """TF32 for float32 matrix products and convolutions inside the block, both flags as they were after it.

    TF32 runs float32 arithmetic on an NVIDIA GPU's tensor cores (Ampere and newer) with a 10-bit mantissa. Two
    flags govern it, with different defaults: ``torch.backends.cuda.matmul.allow_tf32`` (off) and
    ``torch.backends.cudnn.allow_tf32`` (convolutions, on). Setting both back to False afterwards would turn the
    second off for the rest of the process; this puts back what it found. It changes nothing off CUDA.
    """
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def bfloat16_forms(device: torch.device | str, baseline_dtype: torch.dtype, *,
                   capability: tuple[int, int] | None = None,
                   cpu: CpuFeatures | None = None) -> tuple[tuple[str, ...], str]:
    """Which forms of bfloat16 notebook 10 measures against a last rung in ``baseline_dtype`` on ``device``, and why.

    Returns ``(forms, why)``: ``forms`` holds ``"weights"`` (a bfloat16 copy of the pipeline) and/or ``"autocast"``
    (a float32 copy under bfloat16 autocast), empty where bfloat16 would be emulated; ``why`` is one line to print.
    Only a form that differs from the baseline is worth a row: where the last rung already has bfloat16 weights (a
    CPU that computes it), the other form is measured against it.
    """
    if not computes_natively(device, torch.bfloat16, capability=capability, cpu=cpu):
        return (), why_not(device, torch.bfloat16, capability=capability, cpu=cpu)
    if baseline_dtype == torch.bfloat16:
        return ("autocast",), ("the last rung already has bfloat16 weights here, so the other form, float32 weights "
                               "under bfloat16 autocast, is measured against it")
    if baseline_dtype == torch.float16:
        return ("weights",), ("this GPU computes bfloat16 as it does float16: bfloat16 weights against the last "
                              "rung's float16 (autocast over float32 weights would only add casts to it)")
    return ("autocast", "weights"), "both forms against the last rung's float32 weights"


def tf32_support(device: torch.device | str, *, capability: tuple[int, int] | None = None) -> tuple[bool, str]:
    """Whether TF32 changes anything on ``device``: only NVIDIA tensor cores of CUDA capability 8.0 (Ampere) or more
    compute it; on a T4, an Apple GPU or a CPU its flags change nothing, so a measurement there would time noise.
    Returns ``(runs, why)``, ``why`` one line to print."""
    kind = torch.device(device).type
    if kind != "cuda":
        return False, f"TF32 is a mode of NVIDIA tensor cores (Ampere and newer), and this is {kind}"
    capability = capability or torch.cuda.get_device_capability()
    where = f"this GPU (CUDA capability {capability[0]}.{capability[1]})"
    if tuple(capability) < NATIVE_BFLOAT16_CUDA_CAPABILITY:
        return False, f"{where} has no TF32 tensor cores: they came with Ampere (8.0)"
    return True, f"{where} runs float32 products in TF32 on its tensor cores when the flags allow it"

DEVICE_NAMES = {"cuda": "CUDA GPU", "mps": "Apple GPU", "cpu": "CPU"}  # for one-line reasons: "this CUDA GPU"


@dataclass(frozen=True)
class PrecisionRun:
    """One half precision notebook 04 can time against float32, whether it does on this device, and why."""

    name: str  # "float16", "bfloat16 weights", "bfloat16 autocast": the notebook's row
    torch_dtype: torch.dtype  # the dtype the pipeline's weights are loaded in
    autocast: torch.dtype | None  # the dtype ``torch.autocast`` computes in around the call; None for none
    measured: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {'measured' if self.measured else 'not measured'} here: {self.reason}"


def emulated_reason(device: torch.device | str, dtype: torch.dtype, *, capability: tuple[int, int] | None = None,
                    cpu: CpuFeatures | None = None) -> str:
    """Why ``dtype`` is not computed natively on ``device``, in a clause short enough for one printed line
    (:func:`why_not` is the longer sentence of an error message). Where it is computed natively: says so."""
    kind = torch.device(device).type
    name = str(dtype).removeprefix("torch.")
    if computes_natively(device, dtype, capability=capability, cpu=cpu):
        return f"this {DEVICE_NAMES.get(kind, kind)} computes {name} natively"
    if kind == "cpu" and dtype == torch.float16:
        return "no CPU the course meets computes float16: emulated, it is slower than float32"
    if kind == "cpu":
        return "this CPU has neither AVX512-BF16 nor AMX: bfloat16 would be emulated, slower than float32"
    if kind == "cuda":
        capability = capability or torch.cuda.get_device_capability()
        return (f"this GPU (CUDA capability {capability[0]}.{capability[1]}) emulates bfloat16: computing it takes "
                "8.0 or more (an A100, an L4, an H100)")
    if kind == "mps":
        return "the Apple GPU's half type is float16"
    return f"{kind} does not compute {name} natively"


def precisions_to_measure(device: torch.device | str, *, capability: tuple[int, int] | None = None,
                          cpu: CpuFeatures | None = None) -> dict[str, PrecisionRun]:
    """The half precisions notebook 04 could time after float32, by name, each with whether it does on ``device``
    and why.

    Weights in a half precision are timed where the device computes it natively (:func:`half_precision_runs_here`):
    the point is a speed-up, and an emulated format only shows a slow-down. Autocast over float32 weights is timed
    on a CPU that computes bfloat16 (:func:`bfloat16_autocast_pays`); a GPU gets half-precision weights, which also
    save memory. The course's tests (``AUDIOLDM2_TESTS_HALF_ON_CPU=1``) time both weights on any CPU, to run the
    code. One function, so that the notebook's cells follow a decision instead of branching on the device.
    """
    kind = torch.device(device).type

    def weights(dtype: torch.dtype) -> PrecisionRun:
        name = "float16" if dtype == torch.float16 else "bfloat16 weights"
        reason = emulated_reason(device, dtype, capability=capability, cpu=cpu)
        measured = half_precision_runs_here(device, dtype, capability=capability, cpu=cpu)
        if measured and not computes_natively(device, dtype, capability=capability, cpu=cpu):
            reason = f"{reason}; timed only because the course's tests set {settings.TESTS_HALF_ON_CPU_ENV}=1"
        return PrecisionRun(name, dtype, None, measured, reason)

    autocast = bfloat16_autocast_pays(device, torch.float32, cpu=cpu)
    if kind == "cpu":
        autocast_why = emulated_reason(device, torch.bfloat16, capability=capability, cpu=cpu)
    else:
        autocast_why = "a GPU is given half-precision weights, which also halve the memory autocast keeps"
    runs = [weights(torch.float16), weights(torch.bfloat16),
            PrecisionRun("bfloat16 autocast", torch.float32, torch.bfloat16, autocast, autocast_why)]
    return {run.name: run for run in runs}


def ladder_dtype_reason(device: torch.device | str, *, capability: tuple[int, int] | None = None,
                        cpu: CpuFeatures | None = None) -> str:
    """One line: the dtype :func:`ladder_dtype` loads on ``device``, and why (why float32, where no half pays).

    Printed where a notebook loads the pipeline in that dtype, so that a reader on any device reads what runs.
    """
    dtype = ladder_dtype(device, capability=capability, cpu=cpu)
    name = str(dtype).removeprefix("torch.")
    if dtype == torch.float32:
        why = emulated_reason(device, torch.bfloat16, capability=capability, cpu=cpu)
        return f"float32: {why}; float16 is emulated on every CPU the course meets"
    why = emulated_reason(device, dtype, capability=capability, cpu=cpu)
    if dtype == torch.bfloat16:
        return f"{name}: {why} (AVX512-BF16 or AMX); the blog's float16 would be emulated here, slower than float32"
    return f"{name}: {why}, as the blog's GPU did"
