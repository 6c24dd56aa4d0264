"""Every "section N" and "notebook NN" the course prints or writes leads somewhere that exists.

A section number is resolved in the notebook it is written in, unless a notebook is named with it ("notebook 05,
section 9", "notebook 05 (section 9)", "05 §9"). Markdown and code cells both count: the code's prints are read too.
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {path.name[:2]: path for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
NUMBERS = r"[1-9]\d?(?:(?:, | and | or | to |-)[1-9]\d?)*(?!\d)"  # sections: never zero-padded, unlike notebooks
# "notebook 05, section 9", "notebook 05 (section 9)", "notebook 05's section 9", "05, section 9", "05 §9"
SECTION = re.compile(r"(?:\bnotebook (?P<named>\d\d)(?:'s)?(?:, | \(| )|\b(?P<bare>\d\d)(?:, | ))?"
                     rf"(?:\b[Ss]ections? |§ ?)(?P<numbers>{NUMBERS})")
NOTEBOOK = re.compile(rf"\b[Nn]otebooks? (?P<numbers>\d\d(?:(?:, | and | or | to )\d\d)*)\b")


def _numbers(text: str) -> list[int]:
    """"1 to 3" -> [1, 2, 3]; "3 and 4" -> [3, 4]; "1, 2 and 5" -> [1, 2, 5]."""
    found = []
    for part in re.split(r", | and | or ", text):
        ends = [int(n) for n in re.split(r" to |-", part)]
        found += list(range(ends[0], ends[-1] + 1))
    return found


def _text(path: Path) -> str:
    """Every cell's source, with whitespace runs made single spaces (a reference may wrap across lines)."""
    return "\n".join(re.sub(r"\s+", " ", cell.source) for cell in nbformat.read(path, as_version=4).cells)


def _sections(path: Path) -> set[int]:
    headings = (line for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines())
    return {int(match.group(1)) for line in headings if (match := re.match(r"## (\d+)\.", line))}


def broken_references(text: str, here: str | None) -> list[str]:
    """What in ``text`` (written in notebook ``here``; None for the README) points nowhere."""
    broken = []
    for match in NOTEBOOK.finditer(text):
        broken += [f"{match.group(0)!r}: no notebook {n:02d}" for n in _numbers(match.group("numbers"))
                   if f"{n:02d}" not in NOTEBOOKS]
    for match in SECTION.finditer(text):
        number = match.group("named") or match.group("bare") or here
        if number is None:
            broken.append(f"{match.group(0)!r}: a section of which notebook?")
        elif number not in NOTEBOOKS:
            broken.append(f"{match.group(0)!r}: no notebook {number}")
        else:
            missing = [n for n in _numbers(match.group("numbers")) if n not in _sections(NOTEBOOKS[number])]
            broken += [f"{match.group(0)!r}: notebook {number} has no '## {n}.'" for n in missing]
    return broken


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_every_section_and_notebook_a_notebook_names_exists(number):
    assert broken_references(_text(NOTEBOOKS[number]), number) == []


def test_every_section_and_notebook_the_readme_names_exists():
    assert broken_references(re.sub(r"\s+", " ", (ROOT / "README.md").read_text()), None) == []


def test_the_reference_check_catches_what_it_should():
    assert broken_references("section 2 and notebook 03", "01") == []
    assert broken_references("notebook 05 (section 9), notebook 05, section 9, 05 §9", "06") == []
    assert broken_references("sections 1 to 3", "00") == []
    assert broken_references("Section 8 tries it", "07") == []  # 07 has a section 8 (offload)
    assert broken_references("notebook 99", "01") == ["'notebook 99': no notebook 99"]
    assert broken_references("section 42", "01") == ["'section 42': notebook 01 has no '## 42.'"]
    assert broken_references("notebook 01, section 12", "08") == ["'notebook 01, section 12': notebook 01 has no '## 12.'"]
    assert broken_references("sections 6 to 9", "00") == ["'sections 6 to 9': notebook 00 has no '## 8.'",
                                                          "'sections 6 to 9': notebook 00 has no '## 9.'"]
    assert broken_references("see section 2", None) == ["'section 2': a section of which notebook?"]
