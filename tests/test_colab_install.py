"""colab_install.finish(): what it installs, what it keeps, when it restarts, and what it says when it cannot."""

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import colab_install


class FakePip:
    """Stands in for pip: records each call and the constraints it was given; succeeds or fails as told."""

    def __init__(self, returncode=0, stderr=""):
        self.calls, self.constraints, self.returncode, self.stderr = [], [], returncode, stderr

    def __call__(self, arguments):
        self.calls.append(arguments)
        self.constraints.append(Path(arguments[arguments.index("--constraint") + 1]).read_text())
        return subprocess.CompletedProcess(arguments, self.returncode, "", self.stderr)


def _requirements(monkeypatch, *texts):
    monkeypatch.setattr(colab_install, "course_requirements", lambda: [Requirement(t) for t in texts])


def test_installed_course_with_its_pins_met_is_left_alone(capsys):
    pip, restarts = FakePip(), []
    said = colab_install.finish(install=pip, restart=lambda: restarts.append(1))
    assert said.startswith("The course is installed") and said.endswith("nothing to do.")
    assert pip.calls == [] and restarts == []
    assert capsys.readouterr().out == said + "\n"


def test_the_course_asks_for_its_pins_and_no_test_or_lab_extras():
    names = {r.name for r in colab_install.course_requirements()}
    assert {"diffusers", "transformers", "torch"} <= names
    assert not names & {"pytest", "nbval", "jupyterlab"}


def test_missing_libraries_are_installed_with_torch_and_ipywidgets_kept(monkeypatch):
    _requirements(monkeypatch, "torch>=2.0", "not-installed-anywhere==1.0")
    monkeypatch.setattr(colab_install, "KEPT", ("torch", "pytest"))  # pytest plays ipywidgets, installed here
    pip, restarts = FakePip(), []
    said = colab_install.finish(install=pip, restart=lambda: restarts.append(1))
    assert pip.calls[0][0] == "not-installed-anywhere==1.0"
    kept = pip.constraints[0].split()
    assert f"torch=={colab_install.installed_version('torch')}" in kept
    assert f"pytest=={colab_install.installed_version('pytest')}" in kept
    assert restarts == [] and said.startswith("Installed not-installed-anywhere; kept this runtime's torch==")


def test_a_changed_library_already_imported_restarts_the_runtime(monkeypatch):
    _requirements(monkeypatch, "packaging>=999")  # imported by colab_install itself, and older than 999
    pip, restarts = FakePip(), []
    said = colab_install.finish(install=pip, restart=lambda: restarts.append(1))
    assert pip.calls and restarts == [1]
    assert "packaging had been imported in their old version, so the runtime restarts now" in said


def test_a_torch_older_than_the_floor_stops_with_what_to_do(monkeypatch):
    _requirements(monkeypatch, "torch>=999")
    pip = FakePip()
    with pytest.raises(SystemExit, match=r"needs torch>=999; this runtime has torch .*Change runtime type"):
        colab_install.finish(install=pip, restart=lambda: None)
    assert pip.calls == []


def test_a_failed_install_says_pips_last_line_and_what_to_do(monkeypatch):
    _requirements(monkeypatch, "not-installed-anywhere==1.0")
    pip = FakePip(returncode=1, stderr="Looking in indexes: ...\nERROR: No matching distribution found\n")
    with pytest.raises(SystemExit, match=r"failed: ERROR: No matching distribution found \(is the runtime online"):
        colab_install.finish(install=pip, restart=lambda: None)


def test_it_imports_none_of_the_libraries_it_installs():
    # Importing diffusers or transformers before the install would load Colab's old versions into the kernel.
    code = "import sys, colab_install; print(sorted({'torch', 'diffusers', 'transformers', 'helpers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
