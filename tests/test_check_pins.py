"""scripts/check_pins.py, the maintainers' refresh command: the pins it reads and what it says of each (the index
is replaced by a dictionary here; the tests ask no network)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_pins", ROOT / "scripts" / "check_pins.py")
check_pins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_pins)


def test_it_reads_every_exact_pin_of_pyproject_and_environment_yml_and_they_agree():
    pins = check_pins.pyproject_pins()
    for name in ("torch", "diffusers", "transformers", "accelerate", "pytest", "nbval", "jupyterlab"):
        assert name in pins, name
    assert "numpy" not in pins  # a range, not a pin
    assert check_pins.disagreements(pins, check_pins.environment_pins()) == []


def test_a_pin_behind_the_index_is_named_a_held_one_says_why_and_a_silent_index_is_said():
    pins = {"accelerate": "1.15.0", "diffusers": "0.42.1", "torch": "2.13.0", "gone": "1.0"}
    newest = {"accelerate": "1.16.0", "diffusers": "0.42.1", "torch": "2.15.0"}.get
    lines, behind = check_pins.report(pins, newest, have=lambda name: None)
    said = {line.split()[0]: line for line in lines[1:]}
    assert behind == 1
    assert said["accelerate"].endswith("BEHIND: raise to 1.16.0")
    assert said["diffusers"].endswith("newest")
    assert "held back: CI takes the 2.13.0 CPU wheel" in said["torch"]
    assert said["gone"].endswith("the index did not answer")
    assert check_pins.verdict("x", "0.10.0", "0.9.0") == "newest"  # versions compared as versions, not as text


def test_the_pins_are_read_as_pip_reads_them():
    assert check_pins.pins_of(["Jupyter_Lab==4.6.6", "torch==2.13.0 ; sys_platform == 'linux'", "numpy>=1.26",
                               "selenium[extra]==4.25", "-e ."]) == {
        "jupyter-lab": "4.6.6", "torch": "2.13.0", "selenium": "4.25"}
    disagree = check_pins.disagreements({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"})
    assert disagree == ["b: pyproject.toml 2, environment.yml 3", "c: pyproject.toml -, environment.yml 4"]
