"""Finish installing the course on Google Colab: its libraries, around Colab's own torch, then one restart.

Every notebook's first cell installs this course without its dependencies (``pip install --no-deps``, a few
seconds) and then calls :func:`finish`, which does the rest::

    import colab_install
    colab_install.finish()

Why a module of its own, outside ``helpers``: ``import helpers`` imports torch, diffusers and transformers.
Done before the install, that would load the old versions Colab ships into the running Python. This module
uses the standard library alone (and ``packaging``, which pip and every Colab runtime have).

What :func:`finish` keeps and changes:

* **torch stays Colab's** (a CUDA build matched to its GPU and to torchvision and torchaudio). pip is told
  ``torch==<the installed version>``, so it never downloads another; if that torch is older than the course
  needs, it stops with a message instead.
* **ipywidgets stays Colab's** (7.x: Colab's front end does not support 8). The course asks for ``>=7.7,<9``
  (progress bars as bars; ``h.listening.choose``), which 7.7.1 meets; its players are plain HTML ``<audio>``.
* diffusers, transformers and the rest are brought to the versions the course pins.

A library that was already imported keeps running its old code until Python restarts, so when one of those
changed, :func:`finish` says so in one line and ends the runtime's Python, the way Colab expects to be restarted:
"Run all" stops there, and the next "Run all" goes through, this cell doing nothing.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from packaging.requirements import Requirement
from packaging.version import Version

DISTRIBUTION = "audioldm2-faster"
KEPT = ("torch", "ipywidgets")  # what the runtime brought stays as it is


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def course_requirements() -> list[Requirement]:
    """What the installed course asks for (its extras left out: tests and JupyterLab are not for Colab)."""
    requirements = [Requirement(text) for text in metadata.requires(DISTRIBUTION) or []]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


def missing(requirements: Sequence[Requirement]) -> list[Requirement]:
    """The requirements that the installed versions do not meet."""
    return [r for r in requirements
            if (version := installed_version(r.name)) is None or not r.specifier.contains(Version(version), prereleases=True)]


def pip_install(arguments: list[str]) -> subprocess.CompletedProcess:
    """``python -m pip install --quiet ARGUMENTS``, its output kept for the message if it fails."""
    return subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *arguments],
                          capture_output=True, text=True)


def imported_modules_of(distributions: set[str]) -> list[str]:
    """The modules of ``distributions`` that this Python has imported (they would keep their old code)."""
    wanted = {name.lower().replace("_", "-") for name in distributions}
    owners = metadata.packages_distributions()  # top-level module -> the distributions that provide it
    return sorted(module for module, names in owners.items()
                  if module in sys.modules and {n.lower().replace("_", "-") for n in names} & wanted)


def restart_runtime() -> None:
    """End this Python at once; Colab starts a fresh one, as after Runtime > Restart session.

    At once, not when the cell ends: "Run all" has already queued the next cells, and they must not run
    with the old libraries. The pause lets the kernel send the line just printed before it goes.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(1)
    os.kill(os.getpid(), signal.SIGKILL)


def finish(install: Callable[[list[str]], subprocess.CompletedProcess] = pip_install,
           restart: Callable[[], None] = restart_runtime) -> str:
    """Install what the course still needs, keeping Colab's torch and ipywidgets; restart if needed.

    Returns what it did, in one line (also printed): nothing to do, installed, or installed and restarting.
    ``install`` and ``restart`` are there for the tests; a notebook calls ``finish()``.
    """
    requirements = course_requirements()
    torch = next((r for r in requirements if r.name == "torch"), None)
    torch_version = installed_version("torch")
    if torch is not None and torch_version is not None and not torch.specifier.contains(Version(torch_version)):
        raise SystemExit(f"This course needs {torch}; this runtime has torch {torch_version}. Choose the latest "
                         "runtime version (Runtime > Change runtime type), then run this cell again.")
    needed = missing(requirements)
    if not needed:
        return _say(f"The course is installed (diffusers {installed_version('diffusers')}, transformers "
                    f"{installed_version('transformers')}, this runtime's torch {torch_version}): nothing to do.")
    keep = [f"{name}=={version}" for name in KEPT if (version := installed_version(name))]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("\n".join(keep) + "\n")
    try:
        done = install([*(str(r) for r in needed), "--constraint", constraints.name])
    finally:
        os.unlink(constraints.name)
    if done.returncode:
        last = (done.stderr.strip() or done.stdout.strip() or "pip failed").splitlines()[-1]
        raise SystemExit(f"Installing the course's libraries failed: {last} (is the runtime online? Run this cell "
                         "again; Runtime > Disconnect and delete runtime starts from a clean one).")
    changed = {r.name for r in needed}
    stale = imported_modules_of(changed)
    names = ", ".join(sorted(changed))
    if not stale:
        return _say(f"Installed {names}; kept this runtime's {', '.join(keep)}.")
    message = _say(f"Installed {names}; {', '.join(stale)} had been imported in their old version, so the runtime "
                   "restarts now. When it is back, run the notebook again (Runtime > Run all).")
    sys.stdout.flush()
    restart()
    return message


def _say(line: str) -> str:
    print(line)
    return line
