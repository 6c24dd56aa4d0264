"""Where the course lives on GitHub, spelled out everywhere it must be, and one command that moves it.

A notebook opened from its Colab badge cannot import this package before installing it, so the address is
written out in each notebook's badge and install cell, in ``pyproject.toml`` and in the README. This module
holds the one true install cell, checks that every copy agrees with ``settings.REPOSITORY``, and rewrites them
all at once::

    python -m helpers.repository OWNER/NAME     # set the address everywhere, then check
    python -m helpers.repository                # check only: exit 1 and say what disagrees
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from helpers import settings

ROOT = Path(__file__).resolve().parent.parent
SLUG = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

# The first code cell of every notebook: five lines a learner can read. On Colab, pip fetches the course alone
# (a few seconds); colab_install.finish() then installs its libraries around Colab's own torch, says what it did
# in one line, and restarts the runtime once when it must. Anywhere else the cell does nothing.
INSTALL_CELL = '''\
# On Colab: install the course (the first time, the runtime restarts once: then Run all again). Elsewhere: nothing.
import sys
if "google.colab" in sys.modules:
    %pip install --quiet --no-deps "{install_spec}"
    import colab_install; colab_install.finish()'''


def install_spec(repository: str = settings.REPOSITORY) -> str:
    """What pip installs the course from: ``audioldm2-faster @ git+https://github.com/OWNER/NAME``."""
    return f"audioldm2-faster @ git+https://github.com/{repository}"


def install_cell(repository: str = settings.REPOSITORY) -> str:
    """The Colab install cell, as every notebook must have it."""
    return INSTALL_CELL.format(install_spec=install_spec(repository))


def colab_badge_url(notebook: str, repository: str = settings.REPOSITORY) -> str:
    """The address the "Open in Colab" badge of ``notebook`` (a file name) points to."""
    return f"https://colab.research.google.com/github/{repository}/blob/main/notebooks/{notebook}"


def read_repository(root: Path = ROOT) -> str:
    """The address ``helpers/settings.py`` under ``root`` holds (read as text: ``root`` may be another copy)."""
    found = re.search(r'^REPOSITORY = "([^"]+)"', (root / "helpers" / "settings.py").read_text(), re.MULTILINE)
    if found is None:
        raise ValueError(f"no REPOSITORY = \"OWNER/NAME\" line in {root / 'helpers' / 'settings.py'}")
    return found.group(1)


def disagreements(root: Path = ROOT) -> list[str]:
    """Every place under ``root`` that does not spell the address ``helpers/settings.py`` holds; [] if none."""
    repository = read_repository(root)
    url = f"https://github.com/{repository}"
    problems = []
    pyproject = (root / "pyproject.toml").read_text()
    if f'Repository = "{url}"' not in pyproject:
        problems.append(f"pyproject.toml: [project.urls] Repository is not {url}")
    if url not in (root / "README.md").read_text():
        problems.append(f"README.md does not name {url}")
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        if colab_badge_url(path.name, repository) not in cells[0].source:
            problems.append(f"notebooks/{path.name}: the Colab badge does not open {colab_badge_url(path.name, repository)}")
        if cells[1].source != install_cell(repository):
            problems.append(f"notebooks/{path.name}: the install cell differs from helpers.repository.install_cell()")
    return problems


def set_repository(repository: str, root: Path = ROOT) -> list[Path]:
    """Write ``repository`` (``OWNER/NAME``) into settings, pyproject, README and every notebook; the files changed."""
    if not SLUG.match(repository):
        raise ValueError(f"{repository!r}: give the GitHub repository as OWNER/NAME, e.g. my-name/audioldm2-faster")
    old = read_repository(root)
    changed = []
    for path in [root / "helpers" / "settings.py", root / "pyproject.toml", root / "README.md"]:
        text = path.read_text()
        new = text.replace(f'REPOSITORY = "{old}"', f'REPOSITORY = "{repository}"')
        new = new.replace(f"github.com/{old}", f"github.com/{repository}")
        new = new.replace(f"colab.research.google.com/github/{old}/", f"colab.research.google.com/github/{repository}/")
        if new != text:
            path.write_text(new)
            changed.append(path)
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        badge = notebook.cells[0].source.replace(f"colab.research.google.com/github/{old}/",
                                                 f"colab.research.google.com/github/{repository}/")
        if badge != notebook.cells[0].source or notebook.cells[1].source != install_cell(repository):
            notebook.cells[0].source, notebook.cells[1].source = badge, install_cell(repository)
            nbformat.write(notebook, path)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Set the course's GitHub address everywhere, or check it.")
    parser.add_argument("repository", nargs="?", help="OWNER/NAME; leave out to check only")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to change (default: this one)")
    args = parser.parse_args(argv)
    if args.repository:
        changed = set_repository(args.repository, args.root)
        print(f"{args.repository}: {len(changed)} file(s) changed")
    problems = disagreements(args.root)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"every badge, install cell, pyproject.toml and the README name {read_repository(args.root)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
