"""Compile once per machine: one folder for what ``torch.compile`` compiled, shared by every notebook and command.

The first call of a compiled UNet spends most of its time in Inductor: generating kernels (Triton on a CUDA GPU,
C++ on a CPU) and compiling them. Inductor keeps the result on disk, keyed by the graph, its input shapes and dtypes,
the device and the library versions: its *FX graph cache* (the compiled graph and its kernels) and the *AOTAutograd
cache* in front of it, both on by default. A later process that compiles the same graph loads it from there instead
(a cache *hit*): Dynamo still captures the model, but nothing is generated or compiled again.

By default torch keeps that cache in ``/tmp/torchinductor_<user>``, which Colab and many machines empty, so every
notebook of the course would pay the full compilation again. :func:`use_compile_cache` moves it to one course folder
(:func:`helpers.settings.compile_cache_folder`: ``$AUDIOLDM2_COMPILE_CACHE``, else ``~/.cache/audioldm2-faster/
compile``) through ``TORCHINDUCTOR_CACHE_DIR``, the variable torch reads for it; Triton's own kernel cache follows it
(``<folder>/triton``) unless ``TRITON_CACHE_DIR`` is set. :func:`lookups` counts what a call found there.

Not used here: ``torch.compiler.save_cache_artifacts()`` / ``load_cache_artifacts()`` (the "mega cache"), which pack
what one process compiled into bytes, to carry to another machine. Every process of this course runs on the machine
that holds the folder, so the folder already does that job; and on a CPU the packed entries carry the generated C++
but not the compiled library, so a process that loads them compiles the C++ again. Measured with a small
convolutional model, each first call in a new process (torch 2.13.0+cpu, this project's 2 busy x86_64 cores, two
rounds): 15 and 23 s cold, 14 and 20 s after loading the bytes, 4 and 5 s from the folder.
To keep the cache across Colab sessions, point ``AUDIOLDM2_COMPILE_CACHE`` at a folder on your Drive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from helpers import settings
from helpers.errors import CompileCacheError

INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"  # torch's variable: read at every compile, not once at import


@dataclass(frozen=True)
class Lookups:
    """Inductor's compiled-graph cache lookups: ``hits`` (loaded from the folder), ``misses`` (compiled, then
    stored), ``bypassed`` (graphs Inductor could not cache). Take the difference around a call:
    ``found = lookups() - before``; ``str(found)`` says in words whether the call was cold or warm."""

    hits: int = 0
    misses: int = 0
    bypassed: int = 0

    def __sub__(self, before: Lookups) -> Lookups:
        return Lookups(self.hits - before.hits, self.misses - before.misses, self.bypassed - before.bypassed)

    def __str__(self) -> str:
        parts = []
        if self.hits:
            parts.append(f"{self.hits} graph(s) loaded from the compile cache")
        if self.misses:
            parts.append(f"{self.misses} graph(s) compiled and stored")
        if self.bypassed:
            parts.append(f"{self.bypassed} graph(s) compiled that Inductor cannot cache")
        if not parts:
            return "no Inductor graph compiled"
        compiled = self.misses + self.bypassed
        kind = "cold" if not self.hits else "partly warm" if compiled else "warm"
        return f"{kind}: " + ", ".join(parts)


def lookups() -> Lookups:
    """What Inductor's FX graph cache found in this process so far (torch's own counters; Dynamo alone, with
    ``backend="eager"``, compiles nothing for it to find)."""
    from torch._dynamo.utils import counters

    found = counters["inductor"]
    return Lookups(found["fxgraph_cache_hit"], found["fxgraph_cache_miss"], found["fxgraph_cache_bypass"])


def stored_graphs(folder: str | Path) -> int:
    """How many compiled graphs ``folder`` holds: one file per graph (and per set of guards) in its ``fxgraph``."""
    return sum(1 for entry in Path(folder, "fxgraph").glob("*/*/*") if entry.is_file())


def use_compile_cache(folder: str | Path | None = None, *, quiet: bool = False) -> Path:
    """Make every later ``torch.compile`` in this process use ``folder`` as its cache, and print what it holds.

    ``folder``: ``None`` takes :func:`helpers.settings.compile_cache_folder`. Call it before the first compiled call:
    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` at each compilation, but its worker processes and Triton take their
    folder from the first one. Prints one line (unless ``quiet``), e.g. ``compile cache: ~/.cache/audioldm2-faster/
    compile (3 compiled graphs found)``, and returns the folder. A folder that cannot be made is one
    :class:`~helpers.errors.CompileCacheError` line.
    """
    folder = Path(folder if folder is not None else settings.compile_cache_folder()).expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        problem = None if os.access(folder, os.W_OK) else "not writable"
    except OSError as error:
        problem = error.strerror or str(error)
    if problem:
        raise CompileCacheError(f"compile cache: cannot use {folder} ({problem}): set {settings.COMPILE_CACHE_ENV} "
                                "to a folder you can write to.")
    before = os.environ.get(INDUCTOR_CACHE_ENV)
    os.environ[INDUCTOR_CACHE_ENV] = str(folder)
    if not quiet:
        print(describe(folder))
    so_far = lookups()
    if before and Path(before).resolve() != folder and so_far.hits + so_far.misses + so_far.bypassed:
        print(f"note: this process compiled with Inductor before, into {before}; what it compiles from now on goes to "
              f"{folder}, but restart it (the kernel) to keep everything in one folder.")
    return folder


def describe(folder: str | Path) -> str:
    """One line: the folder, and whether the next compilation can expect to find anything in it."""
    count = stored_graphs(folder)
    if count:
        return f"compile cache: {folder} ({count} compiled graph(s) found)"
    return f"compile cache: {folder} (empty: the first compile will take minutes)"
