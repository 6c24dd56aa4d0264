"""Run the course on a machine with no network and its own torch (a cluster's GPU node): two steps.

On a machine with network, where the course is installed (``bash scripts/setup.sh``)::

    .venv/bin/python scripts/offline.py gather WHEELS --python-version 3.12 --platform manylinux_2_28_x86_64

downloads a wheel of every package the course needs except torch (and what torch itself needs, which a machine
with torch has), at the versions installed here, for the target's Python and platform, into WHEELS; plus
``WHEELS/requirements.txt``, the course's own requirements. Copy WHEELS and the course's folder to the GPU node, then
there, with the python that has torch::

    python3 scripts/offline.py install WHEELS --target /tmp/audioldm2-site
    export PYTHONPATH=/tmp/audioldm2-site:$PWD

installs, beside that python's packages, only what it lacks or has at a version the course cannot use (the
course's pinned libraries at their pins): no virtual environment, no torch download, nothing replaced in place
(``pip install --no-index --no-deps --target``). ``bash scripts/gpu.sh WHEELS OUT`` does the install and runs the
benchmark. This file uses the standard library and pip only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare python with pip: pip carries its own copy
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

COURSE = "audioldm2-faster"
REQUIREMENTS_FILE = "requirements.txt"
NEVER = ("torch",)  # the machine's own, always; so are the packages torch requires


class OfflineError(Exception):
    """What stops a step, in one line that says what to do."""


# --------------------------------------------------------------------------------------------
# Requirements and what satisfies them
# --------------------------------------------------------------------------------------------
def target_environment(python_version: str | None = None, platform: str | None = None) -> dict[str, str]:
    """The marker environment (``python_version``, ``platform_machine``, ...) of the machine the wheels are for."""
    env = dict(default_environment())
    if python_version:
        env.update(python_version=python_version, python_full_version=f"{python_version}.0")
    if platform:
        machine = "aarch64" if "aarch64" in platform else "x86_64" if "x86_64" in platform else env["platform_machine"]
        env.update(sys_platform="linux" if "linux" in platform else env["sys_platform"], platform_machine=machine)
    return env


def applies(requirement: Requirement, env: dict[str, str]) -> bool:
    """Whether a requirement applies on ``env``, extras (``; extra == "test"``) left out."""
    return requirement.marker is None or requirement.marker.evaluate({**env, "extra": ""})


def closure(roots: list[str], env: dict[str, str],
            constraints: dict[str, list] | None = None) -> dict[str, str | None]:
    """Every distribution ``roots`` need, recursively, read from what is installed here: name -> version here
    (None for one installed here under no version, i.e. needed on the target only). ``constraints``, if given,
    collects every requirement's specifier on each name."""
    found: dict[str, str | None] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found[name] = None
            continue
        found[name] = distribution.version
        for requirement in map(Requirement, distribution.requires or []):
            if applies(requirement, env):
                todo.append(requirement.name)
                if constraints is not None:
                    constraints.setdefault(canonicalize_name(requirement.name), []).append(requirement.specifier)
    return found


def read_have(path: Path) -> dict[str, str | None]:
    """A target's package list: ``pip list --format=freeze`` lines (``name==version``) or one name a line."""
    have = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            have[canonicalize_name(name.split()[0])] = version.strip() or None
    return have


def wheel_name_version(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return canonicalize_name(name), version


def wheel_requirements(path: Path) -> list[Requirement]:
    with zipfile.ZipFile(path) as wheel:
        info = next(name for name in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", name))
        text = wheel.read(info).decode()
    return [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines() if line.startswith("Requires-Dist:")]


# --------------------------------------------------------------------------------------------
# Step 1: gather
# --------------------------------------------------------------------------------------------
def plan_gather(course: dict[str, str | None], torch_needs: set[str], constraints: dict[str, list],
                have: dict[str, str | None] | None = None) -> list[str]:
    """The ``name==version`` specs to download: the course's closure less torch's, less what the target ``have``
    already at a version every requirement on it accepts (a name listed without a version counts as accepted,
    unless something pins it to one version)."""
    specs = []
    for name, version in sorted(course.items()):
        if name == COURSE or name in NEVER or name in torch_needs or name.startswith("nvidia-") or name == "triton":
            continue
        if have is not None and name in have:
            listed, specs_on_it = have[name], constraints.get(name, [])
            if listed is None and not any(spec.operator == "==" for specs in specs_on_it for spec in specs):
                continue
            if listed is not None and all(specs.contains(listed, prereleases=True) for specs in specs_on_it):
                continue
        specs.append(f"{name}=={version}" if version else name)
    return specs


def expand_platforms(platforms: list[str]) -> list[str]:
    """Every wheel platform a machine of these tags runs: ``manylinux_2_28_x86_64`` means glibc 2.28 or newer,
    so ``manylinux_2_17`` to ``_2_28`` wheels, and the older names of 2.17, 2.12 and 2.5 (pip matches exactly)."""
    expanded = []
    for platform in platforms:
        found = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
        if found:
            glibc, arch = int(found.group(1)), found.group(2)
            expanded += [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 4, -1)]
            expanded += [f"{name}_{arch}" for name, minor in (("manylinux2014", 17), ("manylinux2010", 12),
                                                              ("manylinux1", 5)) if minor <= glibc]
        else:
            expanded.append(platform)
    return list(dict.fromkeys(expanded))


def gather(folder: Path, python_version: str | None, platforms: list[str], have_file: Path | None,
           extras: list[str]) -> list[str]:
    env = target_environment(python_version, platforms[0] if platforms else None)
    try:
        course_requirements = [Requirement(text) for text in metadata.requires(COURSE) or []]
    except metadata.PackageNotFoundError:
        raise OfflineError(f"{COURSE} is not installed in this Python ({sys.executable}): run this from the course's "
                           ".venv (bash scripts/setup.sh, then .venv/bin/python scripts/offline.py gather ...).") from None
    wanted = [r for r in course_requirements if applies(r, env)]
    constraints: dict[str, list] = {}
    course = closure([COURSE], env, constraints)
    torch_needs = set(closure(["torch"], env))
    have = read_have(have_file) if have_file else None
    specs = plan_gather(course, torch_needs, constraints, have) + extras
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REQUIREMENTS_FILE).write_text("\n".join([str(r) for r in wanted] + extras) + "\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(folder)]
    if python_version:
        command += ["--python-version", python_version, "--implementation", "cp"]
    for platform in expand_platforms(platforms):
        command += ["--platform", platform]
    print(f"gathering {len(specs)} wheels into {folder} ...", flush=True)
    if subprocess.run(command + specs).returncode != 0:
        raise OfflineError("pip download failed (its message is above): a package with no wheel for that Python and "
                           "platform (a newer glibc? --platform manylinux_2_N_x86_64 with the node's glibc 2.N).")
    return specs


# --------------------------------------------------------------------------------------------
# Step 2: install beside this Python's packages
# --------------------------------------------------------------------------------------------
def plan_install(requirements: list[Requirement], wheels: dict[str, tuple[str, list[Requirement]]],
                 installed: dict[str, str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Which wheels to install: (names to install from the folder, names kept from this Python -> version).

    A requirement this Python already meets keeps its package (and that package's own needs are its business); one
    it does not meet takes the folder's wheel, whose requirements are then checked in turn. torch is never taken
    from the folder. Raises :class:`OfflineError` naming the first requirement nothing meets.
    """
    take: dict[str, str] = {}  # name -> version, from the folder
    keep: dict[str, str] = {}  # name -> version, this Python's
    todo = [(requirement, "the course") for requirement in requirements if applies(requirement, env)]
    while todo:
        requirement, wanted_by = todo.pop(0)
        name, spec = canonicalize_name(requirement.name), requirement.specifier
        chosen = take.get(name) or keep.get(name)
        if chosen is not None and spec.contains(chosen, prereleases=True):
            continue
        system = installed.get(name)
        if name not in take and system is not None and spec.contains(system, prereleases=True):
            keep[name] = system
            continue
        if name in NEVER:
            raise OfflineError(f"{wanted_by} needs {requirement}, and this Python has "
                               f"{name + ' ' + system if system else 'no ' + name}: install a torch that fits first "
                               "(this step never installs torch).")
        wheel = wheels.get(name)
        if wheel is None or not spec.contains(wheel[0], prereleases=True):
            has = f"this Python has {name} {system}" if system else f"this Python has no {name}"
            folder = f"the folder has {wheel[0]}" if wheel else "the folder has none"
            raise OfflineError(f"{wanted_by} needs {requirement}: {has} and {folder}. Gather it too (scripts/offline.py "
                               "gather, without --have if you used it).")
        keep.pop(name, None)
        take[name] = wheel[0]
        todo += [(needed, f"{name} {wheel[0]}") for needed in wheel[1] if applies(needed, env)]
    return sorted(take), keep


def install(folder: Path, target: Path) -> list[str]:
    paths = sorted(folder.glob("*.whl"))
    if not (folder / REQUIREMENTS_FILE).is_file() or not paths:
        raise OfflineError(f"{folder} holds no gathered wheels ({REQUIREMENTS_FILE} and *.whl): make it with "
                           "scripts/offline.py gather on a machine with network, and copy it here.")
    wheels = {}
    for path in paths:
        name, version = wheel_name_version(path)
        if name not in NEVER:
            wheels[name] = (version, wheel_requirements(path), path)
    requirements = [Requirement(line) for line in (folder / REQUIREMENTS_FILE).read_text().splitlines() if line.strip()]
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}
    env = target_environment()
    take, keep = plan_install(requirements, {n: w[:2] for n, w in wheels.items()}, installed, env)
    target.mkdir(parents=True, exist_ok=True)
    if take:
        command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile", "--upgrade",
                   "--disable-pip-version-check", "--quiet", "--target", str(target),
                   *(str(wheels[name][2]) for name in take)]
        if subprocess.run(command).returncode != 0:
            raise OfflineError("pip install failed (its message is above).")
    torch_version = installed.get("torch", "none")
    print(f"installed {len(take)} wheel(s) into {target}; kept this Python's {len(keep)} (torch {torch_version}, "
          + ", ".join(f"{name} {version}" for name, version in sorted(keep.items()) if name != "torch")[:300] + ")")
    print(f"now: export PYTHONPATH={target}:{Path(__file__).resolve().parent.parent}")
    return take


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/offline.py", description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    g = steps.add_parser("gather", help="on a machine with network: download the course's wheels, torch excepted")
    g.add_argument("folder", type=Path)
    g.add_argument("--python-version", help="the target's Python, e.g. 3.12 (default: this one's)")
    g.add_argument("--platform", action="append", default=[],
                   help="the target's wheel platform, e.g. manylinux_2_28_x86_64 for glibc 2.28 or newer (ldd --version "
                        "there says which; older manylinux tags are added); default: this machine's")
    g.add_argument("--have", type=Path, metavar="FILE", help="the target's `pip list --format=freeze`: leave out what "
                   "it has at a version the course accepts (a bare name a line: whatever its version, unless pinned)")
    g.add_argument("--extra", action="append", default=[], metavar="NAME==VERSION",
                   help="one more package, without its dependencies (e.g. torchao==0.18.0 for notebook 10's int8)")
    i = steps.add_parser("install", help="on the target: install what this Python lacks, beside its torch")
    i.add_argument("folder", type=Path)
    i.add_argument("--target", type=Path, required=True, help="the folder to install into (then put it on PYTHONPATH)")
    args = parser.parse_args(argv)
    try:
        if args.step == "gather":
            gather(args.folder, args.python_version, args.platform, args.have, args.extra)
        else:
            install(args.folder, args.target)
    except OfflineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
