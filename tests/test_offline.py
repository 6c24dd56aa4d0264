"""The offline path to a GPU node: gather the course's wheels where there is network, install them beside a
Python that already has torch (never replacing it), and run the benchmark from there."""

import importlib.util
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("offline", ROOT / "scripts" / "offline.py")
offline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(offline)

ENV = offline.target_environment()


def _wheel(version, *requires):
    return version, [Requirement(text) for text in requires]


def test_install_keeps_what_this_python_has_takes_pins_and_never_torch():
    course = [Requirement(text) for text in ("diffusers==0.42.1", "torch>=2.11", "numpy>=1.26", "librosa>=0.10",
                                             "pytest; extra == 'test'")]
    wheels = {"diffusers": _wheel("0.42.1", "numpy", "huggingface-hub>=1.32"),
              "numpy": _wheel("2.4.6"), "huggingface-hub": _wheel("1.40.0", "tqdm"), "tqdm": _wheel("4.70.1"),
              "librosa": _wheel("0.11.0", "numpy>=1.22"), "torch": _wheel("2.13.0")}
    installed = {"torch": "2.11.0+cu130", "numpy": "2.5.2", "diffusers": "0.35.2", "huggingface-hub": "1.20.0"}
    take, keep = offline.plan_install(course, wheels, installed, ENV)
    # numpy: this Python's fits, kept; diffusers: pinned, taken; its huggingface-hub too old here, taken with tqdm
    assert take == ["diffusers", "huggingface-hub", "librosa", "tqdm"]
    assert keep == {"torch": "2.11.0+cu130", "numpy": "2.5.2"}


def test_install_names_the_first_requirement_nothing_meets():
    course = [Requirement("torch>=2.11")]
    with pytest.raises(offline.OfflineError, match=r"needs torch>=2.11, and this Python has torch 2.9.0"):
        offline.plan_install(course, {"torch": _wheel("2.13.0")}, {"torch": "2.9.0"}, ENV)  # a torch wheel is ignored
    with pytest.raises(offline.OfflineError, match=r"diffusers 0.42.1 needs numpy>=2: this Python has numpy 1.26.4 "
                                                   r"and the folder has none"):
        offline.plan_install([Requirement("diffusers")], {"diffusers": _wheel("0.42.1", "numpy>=2")},
                             {"numpy": "1.26.4"}, ENV)


def test_gather_leaves_out_torch_its_needs_and_what_the_target_has_at_a_version_the_course_accepts():
    from packaging.specifiers import SpecifierSet

    course = {"audioldm2-faster": "0.1.0", "torch": "2.13.0", "sympy": "1.14.0", "diffusers": "0.42.1",
              "transformers": "5.23.0", "numpy": "2.4.6", "librosa": "0.11.0", "tokenizers": "0.23.3",
              "nvidia-cublas": "13.0"}
    constraints = {"diffusers": [SpecifierSet("==0.42.1")], "transformers": [SpecifierSet("==5.23.0")],
                   "numpy": [SpecifierSet(">=1.26"), SpecifierSet(">=1.17")], "tokenizers": [SpecifierSet("<0.24,>=0.23.1")]}
    assert offline.plan_gather(course, {"torch", "sympy"}, constraints) == [
        "diffusers==0.42.1", "librosa==0.11.0", "numpy==2.4.6", "tokenizers==0.23.3", "transformers==5.23.0"]
    # e.g. a GPU image's pip list: its numpy and diffusers do, its transformers and tokenizers do not
    have = {"numpy": "2.5.2", "transformers": "5.17.0", "diffusers": "0.42.1", "tokenizers": "0.22.0"}
    assert offline.plan_gather(course, {"torch", "sympy"}, constraints, have) == [
        "librosa==0.11.0", "tokenizers==0.23.3", "transformers==5.23.0"]
    bare = {"transformers": None, "numpy": None}  # names without versions: left out, unless pinned
    assert offline.plan_gather(course, {"torch", "sympy"}, constraints, bare) == [
        "diffusers==0.42.1", "librosa==0.11.0", "tokenizers==0.23.3", "transformers==5.23.0"]


def _python_with_torch_only(folder: Path) -> dict:
    """A stand-in for a GPU node's Python: this interpreter without its site-packages (``-S``), and a folder with
    only torch, what torch needs, and pip. Returns the environment to run it with."""
    folder.mkdir()
    for name in ("torch", *sorted(offline.closure(["torch"], ENV)), "pip"):
        distribution = metadata.distribution(name)
        tops = {str(path).split("/")[0] for path in distribution.files or [] if not str(path).startswith("..")}
        for top in tops - {"__pycache__"}:
            source = Path(distribution.locate_file(top))
            if source.exists() and not (folder / top).exists() and not top.endswith(".pth"):
                (folder / top).symlink_to(source)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PYTHONPATH": str(folder), "PYTHONNOUSERSITE": "1"}


def _torch_here(env) -> str:
    code = "import torch, importlib.metadata as m; print(torch.__version__, torch.__file__, m.version('torch'))"
    done = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    return done.stdout.strip()


@pytest.mark.slow(reason="downloads every wheel of the course from the index, installs them beside a bare Python "
                         "and runs the benchmark there: minutes")
def test_wheels_gathered_here_install_beside_a_system_torch_and_run_the_benchmark(tmp_path, tiny_checkpoint):
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest",
                            str(tmp_path / "probe"), f"packaging=={metadata.version('packaging')}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no package index reachable from here: {probe.stderr.strip().splitlines()[-1:]}")
    wheels = tmp_path / "wheels"
    assert offline.main(["gather", str(wheels)]) == 0  # for this machine's Python and platform
    names = [offline.wheel_name_version(path)[0] for path in wheels.glob("*.whl")]
    assert "diffusers" in names and "torch" not in names and not any(name.startswith("nvidia") for name in names)

    system = _python_with_torch_only(tmp_path / "system")
    python = tmp_path / "python3"  # the GPU node's python3: torch and nothing of the course
    python.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    python.chmod(0o755)
    torch_before = _torch_here(system)
    tree_before = _tree(ROOT)
    out, site = tmp_path / "bench", tmp_path / "site"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu.sh"), str(wheels), str(out)], cwd=tmp_path,
                          env={**system, "PYTHON": str(python), "SITE": str(site), "DEADLINE": "40",
                               "NOTEBOOKS_S": "0",  # the notebooks' part: tests/test_gpu_script.py
                               "AUDIOLDM2_MODEL": str(tiny_checkpoint)}, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "kept this Python's" in done.stdout and not list(site.glob("torch*")) and (site / "diffusers").is_dir()
    assert _torch_here({**system, "PYTHONPATH": f"{site}:{system['PYTHONPATH']}"}) == torch_before  # the same torch
    rows = [json.loads(line) for line in (out / "bench" / "results.jsonl").read_text().splitlines()]
    assert rows[0]["kind"] == "machine" and rows[-1]["kind"] == "end" and (out / "bench" / "summary.md").is_file()
    assert rows[0]["versions"]["torch"] == torch_before.split()[0]
    assert _tree(ROOT) == tree_before  # nothing written inside the course's folder


def _tree(root: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=root, capture_output=True, text=True).stdout


def test_the_gpu_command_refuses_to_write_inside_the_course(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu.sh"), str(tmp_path), str(ROOT / "bench-out")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "inside the course's folder" in done.stderr
    assert not (ROOT / "bench-out").exists()


def test_a_glibc_platform_takes_every_older_manylinux_wheel():
    platforms = offline.expand_platforms(["manylinux_2_28_x86_64"])
    assert platforms[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert "manylinux_2_29_x86_64" not in platforms and {"manylinux2014_x86_64", "manylinux1_x86_64"} <= set(platforms)
    assert offline.expand_platforms(["macosx_11_0_arm64"]) == ["macosx_11_0_arm64"]
