"""``torch.compile`` where it can run, a readable message where it cannot, and a count of recompiles.

``torch.compile`` has two halves. **Dynamo** reads the model's Python as it runs and captures its tensor
operations in a graph, with *guards*: the shapes, dtypes and devices the graph is valid for. A
**backend** turns the graph into code; the default, **Inductor**, writes Triton kernels for a CUDA GPU
(which needs Triton, a GPU of CUDA capability 7.0 or more, and a C compiler for Triton's launcher) and
C++/OpenMP kernels for a CPU (which needs a C++ compiler). When one of those is missing the failure
only shows at the first call of the compiled model, deep in a long traceback. So:

* :func:`compile_support` says before compiling whether Inductor can run on a device, and why not;
* :func:`explain_compile_failure` turns a failure at the first call into a
  :class:`~helpers.errors.CompileUnavailableError` (or a printed message) that says what to do: go on
  with the eager model;
* :func:`compiled_graphs` and :func:`recompile_reasons` count what Dynamo compiled and say why it
  compiled again (a guard failed: a new shape, a new dtype, ...).

The ``torch.compile(...)`` call itself stays in the notebooks, in plain sight.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import torch
import torch._dynamo

from helpers.errors import CompileUnavailableError, Failure, explained

TRITON_MIN_CAPABILITY = (7, 0)  # Triton's own limit; torch raises GPUTooOldForTriton below it


# --------------------------------------------------------------------------------------------
# Before compiling: can Inductor run on this device?
# --------------------------------------------------------------------------------------------
def _runs(compiler: str) -> bool:
    """True when ``compiler --version`` runs (a macOS stub that only offers to install Xcode does not)."""
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def find_cxx_compiler() -> str | None:
    """The C++ compiler Inductor's CPU backend would use: ``$CXX``, else ``g++`` (``clang++`` on macOS,
    ``cl`` on Windows), as a full path, or None when there is none that runs."""
    default = "cl" if sys.platform == "win32" else "clang++" if sys.platform == "darwin" else "g++"
    name = os.environ.get("CXX") or default
    path = shutil.which(name)
    if path is None:
        return None
    if sys.platform == "win32":  # cl.exe has no --version; being on PATH is what Inductor checks first
        return path
    return path if _runs(path) else None


def find_c_compiler() -> str | None:
    """The C compiler Triton builds its small kernel launcher with: ``$CC``, else ``gcc``, else ``clang``."""
    for name in (os.environ.get("CC"), "gcc", "clang", "cc"):
        if name and (path := shutil.which(name)):
            return path
    return None


def compile_support(device: torch.device | str, *, backend: str = "inductor") -> tuple[bool, str]:
    """Can ``torch.compile`` with ``backend`` run on ``device`` here? Returns ``(ok, reason)``.

    ``reason`` says what was found, or what is missing and what to do. Nothing is compiled: this only
    looks (torch version and Python, the GPU's CUDA capability, Triton, a C/C++ compiler), so it cannot
    promise that a compile succeeds, only rule out the usual causes of failure. ``backend="eager"``
    checks Dynamo alone (it captures graphs and runs them unchanged: no compiler needed).
    """
    device = torch.device(device)
    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile (it came with torch 2.0): upgrade torch."
    if not torch._dynamo.is_dynamo_supported():
        return False, (f"torch {torch.__version__} does not support torch.compile on Python "
                       f"{sys.version.split()[0]}: use a Python version it supports (see torch's release notes).")
    if backend != "inductor":
        return True, f"Dynamo runs on Python {sys.version.split()[0]} with torch {torch.__version__}; backend={backend!r}."

    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "device 'cuda' asked for, but torch sees no CUDA GPU."
        capability = tuple(torch.cuda.get_device_capability(device))
        name = torch.cuda.get_device_name(device)
        if capability < TRITON_MIN_CAPABILITY:
            return False, (f"{name} has CUDA capability {capability[0]}.{capability[1]}; Inductor's Triton kernels "
                           f"need {TRITON_MIN_CAPABILITY[0]}.{TRITON_MIN_CAPABILITY[1]} or more (a T4 is 7.5). "
                           "Stay with the eager model on this GPU.")
        if importlib.util.find_spec("triton") is None:
            hint = ("on Windows Triton is not published by its authors (the community package triton-windows "
                    "exists)" if sys.platform == "win32" else "pip install triton, at the version your torch names")
            return False, f"Triton is not installed, and Inductor writes its GPU kernels in Triton: {hint}."
        c_compiler = find_c_compiler()
        if c_compiler is None:
            return False, ("no C compiler found (looked for $CC, gcc, clang, cc), and Triton builds its kernel "
                           "launcher with one: install gcc (apt install gcc) or set CC.")
        return True, (f"{name}, CUDA capability {capability[0]}.{capability[1]}, Triton installed, C compiler "
                      f"{c_compiler}: Inductor can generate Triton kernels here.")

    if device.type == "cpu":
        cxx = find_cxx_compiler()
        if cxx is None:
            wanted = os.environ.get("CXX") or ("cl (MSVC)" if sys.platform == "win32" else
                                               "clang++" if sys.platform == "darwin" else "g++")
            install = ("install Visual Studio's C++ build tools and run from a Developer prompt" if sys.platform == "win32"
                       else "xcode-select --install" if sys.platform == "darwin" else "apt install g++ (or set CXX)")
            return False, (f"Inductor's CPU backend compiles C++ and found no working C++ compiler ({wanted}): "
                           f"{install}, or stay with the eager model.")
        return True, f"C++ compiler {cxx}: Inductor can generate C++/OpenMP kernels for this CPU."

    if device.type == "mps":
        return True, ("Apple MPS: Inductor has a Metal backend, newer and less tested than its CUDA and CPU ones; "
                      "if the first call fails, go on with the eager model.")
    return False, f"device type {device.type!r}: this course covers torch.compile on CUDA, CPU and MPS only."


# --------------------------------------------------------------------------------------------
# At the first call: a failure to compile, explained
# --------------------------------------------------------------------------------------------
def _compile_error_types() -> tuple[type, ...]:
    import torch._dynamo.exc as dynamo_exc

    types: list[type] = [dynamo_exc.TorchDynamoException]  # BackendCompilerFailed, InductorError, Unsupported, ...
    if hasattr(dynamo_exc, "FailOnRecompileLimitHit"):  # a plain Exception: too many recompiles under fullgraph=True
        types.append(dynamo_exc.FailOnRecompileLimitHit)
    try:
        import torch._inductor.exc as inductor_exc

        types += [inductor_exc.InvalidCxxCompiler, inductor_exc.CppCompileError]
    except ImportError:
        pass
    return tuple(types)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or getattr(error, "inner_exception", None) or error.__context__


def is_compile_failure(error: BaseException) -> bool:
    """True when ``error`` (or an error it was raised from) comes from torch.compile, not from the model."""
    types = _compile_error_types()
    return any(isinstance(link, types) for link in _chain(error))


def _advice(error: BaseException) -> str:
    """What to do about this particular failure, from the names of the errors in its chain."""
    names = {type(link).__name__ for link in _chain(error)}
    text = " ".join(str(link) for link in _chain(error)).lower()
    if "GPUTooOldForTriton" in names or "too old to be supported by the triton" in text:
        return "This GPU is too old for Triton (CUDA capability below 7.0): stay eager on it."
    if "TritonMissing" in names or "cannot find a working triton" in text:
        return "Install Triton (pip install triton, at the version your torch names), or stay eager."
    if "InvalidCxxCompiler" in names or "CppCompileError" in names or "c compiler" in text:
        return ("A C/C++ compiler is missing or failed: install one (apt install g++ gcc; macOS: xcode-select "
                "--install) or set CXX/CC, or stay eager.")
    if "FailOnRecompileLimitHit" in names or "recompile limit" in text:
        return ("The model was compiled again for too many shapes (torch._dynamo.config.recompile_limit), and "
                "fullgraph=True turns that into an error: keep the shapes fixed (one audio length, one "
                "num_waveforms_per_prompt), compile with dynamic=True, or raise the limit.")
    if "Unsupported" in names:
        return ("Dynamo met code it cannot capture in one graph, and fullgraph=True turns such a graph break into "
                "an error: drop fullgraph=True to let it split the graph (slower), or stay eager.")
    return ("The compiler backend failed on this model, GPU or library versions (the blog's companion Colab "
            "dropped torch.compile after such a BackendCompilerFailed on a free T4): try mode='default' "
            "instead of 'reduce-overhead', another torch version, or stay eager.")


def explain_compile_failure(what: str = "Compiling the model", *, reraise: bool = True) -> ContextManager[Failure]:
    """Turn a torch.compile failure in the block (put the compiled model's first call in it) into a message::

        eager_unet = pipe.unet
        pipe.unet = torch.compile(pipe.unet, fullgraph=True)
        with explain_compile_failure("Compiling the UNet", reraise=False) as failure:
            pipe(prompt)                      # the first call compiles
        if failure.happened:
            pipe.unet = eager_unet            # the message has been printed: go on eager

    A failure is a Dynamo or Inductor error anywhere in the exception's chain (``BackendCompilerFailed``,
    ``InductorError``, a graph break under ``fullgraph=True``, a missing compiler or Triton, a GPU too
    old for Triton). Then this resets Dynamo's caches (``torch._dynamo.reset()``: half-compiled code must
    not be called again) and, with ``reraise=True`` (the default), raises
    :class:`~helpers.errors.CompileUnavailableError` with the reason and what to do, without the long
    original traceback; with ``reraise=False`` it prints that, sets ``happened`` and the code after the
    block goes on. Any other exception (a bug in the model, out of memory) passes through unchanged
    (:func:`helpers.errors.explained` does the work).
    """

    def describe(error: BaseException) -> str:
        detail = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        detail = detail if len(detail) <= 400 else detail[:400] + " ..."
        return (f"{what} failed: {type(error).__name__}: {detail}\n{_advice(error)}\n"
                "The eager model computes the same thing, only without the compiled speed-up: keep "
                "a reference to it before compiling and put it back (pipe.unet = eager_unet).")

    return explained(is_compile_failure, describe, CompileUnavailableError, reraise=reraise,
                     clean_up=torch._dynamo.reset)


# --------------------------------------------------------------------------------------------
# Counting compilations
# --------------------------------------------------------------------------------------------
def compiled_graphs() -> int:
    """How many graphs Dynamo has compiled in this process so far (every backend; ``torch._dynamo.reset()``
    does not zero it). Take the difference around a call: 0 means the call reused compiled code; 1 or
    more means it compiled (the first time) or recompiled."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def recompile_reasons() -> list[str]:
    """Why Dynamo compiled again, one line per guard failure so far, oldest first, e.g.
    ``"0/0: tensor 'sample' size mismatch at index 2. expected 64, actual 32"`` (``0/0``: frame 0, its
    compiled entry 0). Take the new ones around a call. Cleared by ``torch._dynamo.reset()``."""
    from torch._dynamo.utils import guard_failures

    return [reason.splitlines()[0] for reasons in guard_failures.values() for reason in reasons]


# --------------------------------------------------------------------------------------------
# Compiled where it works, eager where it does not
# --------------------------------------------------------------------------------------------
class CompiledOrEager(torch.nn.Module):
    """``torch.compile(module, **compile_kwargs)``, that goes on with the eager ``module`` if compiling fails.

    A compile fails at the first call, not at ``torch.compile``: this wrapper makes that call, and on a compile
    failure (:func:`is_compile_failure`) calls the eager module instead; if that works, it prints one line and calls
    the eager module from then on (the compiled one is never called again, so nothing needs resetting). If the eager
    module fails too, its error is raised: the model's or its input's, not the compiler's. Attributes it does not
    have (``config``, ``dtype``) are the module's, as with ``torch.compile``'s own wrapper. ``failed`` says why, or
    is empty. With ``mode="reduce-overhead"`` (CUDA graphs) the output lives in the graph's memory, which its next
    replay overwrites: the caller gets a copy.
    """

    def __init__(self, module: torch.nn.Module, what: str, **compile_kwargs):
        super().__init__()
        self.eager, self.what, self.failed = module, what, ""
        self.compiled = torch.compile(module, **compile_kwargs)
        self.copy_output = compile_kwargs.get("mode") == "reduce-overhead"

    def forward(self, *args, **kwargs):
        if self.failed:
            return self.eager(*args, **kwargs)
        try:
            output = self.compiled(*args, **kwargs)
            return output.clone() if self.copy_output else output
        except Exception as error:
            if not is_compile_failure(error):
                raise
            failure = error
        output = self.eager(*args, **kwargs)  # if this fails too, the error is the model's (or its input's)
        cause = list(_chain(failure))[-1]  # the error the compiler met, under Dynamo's wrappers
        first_line = (str(cause).strip().splitlines() or [""])[0][:200]
        self.failed = f"{type(failure).__name__}, from {type(cause).__name__}: {first_line}"
        print(f"{self.what}: compiling failed ({self.failed}); going on with the eager model.")
        return output

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # parameters, buffers, submodules (eager, compiled)
        except AttributeError:
            return getattr(self.eager, name)


# --------------------------------------------------------------------------------------------
# The blog's compile: where it runs
# --------------------------------------------------------------------------------------------
def blog_compile_support(device: torch.device | str, *,
                         support: Callable[[torch.device], tuple[bool, str]] = compile_support) -> tuple[bool, str]:
    """Can the blog's ``torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)`` run on ``device``?
    Returns ``(ok, reason)``, one line to print.

    ``mode="reduce-overhead"`` replays CUDA graphs, a CUDA feature: on any other device the answer is no, whatever
    Inductor could do there (notebook 05 compiles in the default mode on a CPU). On a CUDA GPU, ``support`` (by
    default :func:`compile_support`) looks for what Inductor needs.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return False, (f"the blog's mode=\"reduce-overhead\" replays CUDA graphs, a CUDA feature, and this is "
                       f"{device.type} (notebook 05 shows what compiling does here)")
    return support(device)


# Which compiler, on which device (notebook 05)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompileChoice:
    """What the course compiles the UNet with on a device, and the one-line reason a notebook prints.

    ``backend``: ``"inductor"`` (kernels generated and compiled), ``"eager"`` (Dynamo alone: the graph is captured,
    with its guards and recompiles, and run with PyTorch's own kernels) or ``None`` (nothing compiles: stay eager).
    ``mode``: ``"reduce-overhead"`` (Inductor, then its kernels replayed as CUDA graphs: the blog's), ``"default"``
    (Inductor alone) or ``None``.
    """

    backend: str | None
    mode: str | None
    why: str

    @property
    def label(self) -> str:
        """How a row or a player names what ran: ``mode='default'``, ``backend='eager', Dynamo alone``, ..."""
        if self.backend is None:
            return "not compiled"
        return "backend='eager', Dynamo alone" if self.backend == "eager" else f"mode={self.mode!r}"

    def __str__(self) -> str:
        return f"{self.label}: {self.why}"


def choose_compile(device: torch.device | str, *, inductor: tuple[bool, str] | None = None,
                   dynamo: tuple[bool, str] | None = None, smoke: bool | None = None) -> CompileChoice:
    """How notebook 05 compiles the UNet on ``device``: the blog's ``mode="reduce-overhead"`` where it means something.

    ``reduce-overhead`` replays the UNet's kernels as CUDA graphs, which exist only on CUDA GPUs: elsewhere Inductor
    skips them and the mode quietly does what ``mode="default"`` does, so off CUDA the course writes ``"default"``.
    Inductor's C++ compilation on a CPU takes minutes per shape, so a smoke run off CUDA (a check that the code runs)
    uses Dynamo alone. Where Inductor cannot run, Dynamo alone; where Dynamo cannot either, nothing.
    ``inductor`` and ``dynamo``: what :func:`compile_support` answers for each backend (``(ok, reason)``), asked here
    when not given; ``smoke``: :func:`helpers.settings.smoke_mode` when not given. Tests inject all three.
    """
    from helpers import settings

    kind = torch.device(device).type
    inductor_ok, inductor_reason = inductor if inductor is not None else compile_support(device)
    dynamo_ok, dynamo_reason = dynamo if dynamo is not None else compile_support(device, backend="eager")
    smoke = settings.smoke_mode() if smoke is None else smoke
    if kind == "cuda" and inductor_ok:
        return CompileChoice("inductor", "reduce-overhead",
                             "a CUDA GPU: Inductor's Triton kernels, replayed as CUDA graphs, as the blog did. "
                             "The first call compiles: a minute or more.")
    if inductor_ok and not smoke:
        return CompileChoice("inductor", "default",
                             f"no CUDA GPU: CUDA graphs do not apply to {kind}, so mode='default' (Inductor alone). "
                             "The first call compiles: minutes here.")
    if dynamo_ok:
        reason = ("a smoke run off CUDA: Inductor would compile for minutes, for every shape. " if inductor_ok
                  else f"Inductor cannot run here ({inductor_reason}) ")
        return CompileChoice("eager", None,
                             reason + "Dynamo alone (backend='eager') captures the graph and recompiles on the same "
                             "changes, in seconds, but runs PyTorch's own kernels: no speed-up to expect.")
    return CompileChoice(None, None, f"torch.compile cannot run here: {dynamo_reason} The UNet stays eager.")


def quiet_traced_version_checks() -> None:
    """Hide Dynamo's warning about diffusers' cached version check in its upsampling blocks: tracing it is exact.

    For bfloat16 only, diffusers' ``Upsample2D.forward`` asks ``is_torch_version("<", "2.1")``, a function wrapped in
    ``functools.lru_cache``. Dynamo traces through the cache wrapper and warns, once per call site, that skipping a
    cache could in principle change a result. This one compares the installed torch's version with a constant: the
    traced function returns what the cached one would. The filter names those call sites (``upsampling.py``), so that
    the same warning about any other cached function still shows.
    """
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning,
                            message=r"Dynamo detected a call to a `functools\.lru_cache`-wrapped function at "
                                    r"'upsampling\.py:")
