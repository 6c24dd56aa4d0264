"""For maintainers: each library the course pins, against the newest release on the package index.

    .venv/bin/python scripts/check_pins.py            # one line per pin; exit code 1 when one is behind
    .venv/bin/python scripts/check_pins.py --offline  # the pins and what this environment has, no index asked

Reads the exact pins (``name==version``) of ``pyproject.toml`` (dependencies and every extra) and
``environment.yml``, asks the index through pip itself (``pip index versions NAME``: pip's configuration, proxy and
extra indexes apply) for the newest release of each, and prints one line per pin: pinned, installed here, newest,
and what to do. A pin held back on purpose says why (``HELD`` below, and the README's Versions section); a refresh
is then: raise the pins, ``bash scripts/setup.sh``, run the course in the CPU profile and the tests, and update
the README's versions line and known problems.

Not for learners: the course's notebooks never call it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Callable

from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
# Pins kept below the newest release on purpose, and why (the README's Versions section says the same).
HELD = {
    "transformers": "5.24.0 and newer print a FutureWarning (past_key_values, passed by diffusers 0.42.1's "
                    "AudioLDM2Pipeline) under every notebook's first generation",
    "torch": "CI takes the 2.13.0 CPU wheel at hand; PyPI's newer Linux wheels are CUDA builds of about 3 GB "
             "that every fresh CI machine would download (Colab keeps its own torch: the floor is >=2.11)",
}
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;,#]+)")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_of(requirements: list[str]) -> dict[str, str]:
    """name -> version of every exact pin among ``requirements`` (ranges and editable installs are left out)."""
    pins = {}
    for requirement in requirements:
        match = PIN.match(requirement) if isinstance(requirement, str) else None
        if match:
            pins[_name(match.group(1))] = match.group(3)
    return pins


def pyproject_pins(path: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    project = tomllib.loads(path.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return pins_of(requirements)


def environment_pins(path: Path = ROOT / "environment.yml") -> dict[str, str]:
    """The pip section of environment.yml, read line by line (no YAML library needed for a flat list)."""
    requirements = [line.strip()[2:] for line in path.read_text().splitlines() if line.strip().startswith("- ")]
    return pins_of(requirements)


def newest_on_index(name: str) -> str | None:
    """The newest release of ``name`` as ``pip index versions`` reports it, or None when pip cannot say."""
    done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=120)
    match = re.search(r"^\S+ \(([^)]+)\)", done.stdout, re.MULTILINE)
    return match.group(1) if done.returncode == 0 and match else None


def installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def verdict(name: str, pinned: str, newest: str | None) -> str:
    if newest is None:
        return "the index did not answer"
    try:
        behind = Version(pinned) < Version(newest)
    except InvalidVersion:
        behind = pinned != newest
    if not behind:
        return "newest"
    if name in HELD:
        return f"held back: {HELD[name]}"
    return f"BEHIND: raise to {newest}"


def report(pins: dict[str, str], newest: Callable[[str], str | None] | None,
           have: Callable[[str], str | None] = installed) -> tuple[list[str], int]:
    """The table's lines and how many pins are behind without a reason (``newest`` None: offline, not asked)."""
    rows, behind = [("package", "pinned", "installed", "newest", "")], 0
    for name in sorted(pins):
        latest = newest(name) if newest else None
        said = verdict(name, pins[name], latest) if newest else ""
        behind += said.startswith("BEHIND")
        rows.append((name, pins[name], have(name) or "-", latest or ("-" if newest else "(offline)"), said))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + ("  " + row[4] if row[4] else "")
             for row in rows]
    return [line.rstrip() for line in lines], behind


def disagreements(pyproject: dict[str, str], environment: dict[str, str]) -> list[str]:
    return [f"{name}: pyproject.toml {pyproject.get(name, '-')}, environment.yml {environment.get(name, '-')}"
            for name in sorted(set(pyproject) | set(environment)) if pyproject.get(name) != environment.get(name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Each pinned library against the newest release on the index.")
    parser.add_argument("--offline", action="store_true", help="do not ask the index; list the pins only")
    args = parser.parse_args(argv)
    pins, environment = pyproject_pins(), environment_pins()
    lines, behind = report(pins, None if args.offline else newest_on_index)
    print("\n".join(lines))
    problems = disagreements(pins, environment)
    for problem in problems:
        print(f"pyproject.toml and environment.yml disagree on {problem}")
    if behind:
        print(f"{behind} pin(s) behind the index: raise them, run the course in the CPU profile and the tests "
              "(bash scripts/test.sh), then the README's versions line and known problems.")
    return 1 if behind or problems else 0


if __name__ == "__main__":
    sys.exit(main())
