"""One command sets the course's GitHub address everywhere; the agreement check finds a copy left behind."""

import shutil

import nbformat
import pytest

from helpers import repository, settings

FILES = ["helpers/settings.py", "pyproject.toml", "README.md"]


@pytest.fixture
def checkout(tmp_path):
    """A copy of the files that spell the address out."""
    for name in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repository.ROOT / name, tmp_path / name)
    shutil.copytree(repository.ROOT / "notebooks", tmp_path / "notebooks",
                    ignore=shutil.ignore_patterns("*.wav", "*.jsonl", ".ipynb_checkpoints"))
    return tmp_path


def _texts(root):
    paths = [root / name for name in FILES] + sorted((root / "notebooks").glob("*.ipynb"))
    return {path.relative_to(root).as_posix(): path.read_text() for path in paths}


def test_setting_the_address_changes_every_copy_at_once(checkout):
    assert repository.main(["someone/course-fork", "--root", str(checkout)]) == 0
    assert repository.read_repository(checkout) == "someone/course-fork"
    assert repository.disagreements(checkout) == []
    for name, text in _texts(checkout).items():
        assert f"github.com/{settings.REPOSITORY}" not in text, f"{name} still names the old address"
        assert f"github/{settings.REPOSITORY}/" not in text, f"{name} still opens the old address in Colab"
    first = nbformat.read(checkout / "notebooks" / "03_sdpa.ipynb", as_version=4)
    assert "someone/course-fork/blob/main/notebooks/03_sdpa.ipynb" in first.cells[0].source
    assert '"audioldm2-faster @ git+https://github.com/someone/course-fork"' in first.cells[1].source


def test_the_check_names_a_notebook_left_behind(checkout, capsys):
    repository.set_repository("someone/course-fork", checkout)
    shutil.copy(repository.ROOT / "notebooks" / "05_torch_compile.ipynb", checkout / "notebooks")  # the old one
    assert repository.main(["--root", str(checkout)]) == 1
    out = capsys.readouterr().out
    assert "notebooks/05_torch_compile.ipynb: the Colab badge does not open" in out
    assert "notebooks/05_torch_compile.ipynb: the install cell differs" in out
    assert "06_scheduler" not in out


def test_setting_it_twice_changes_nothing_the_second_time(checkout):
    repository.set_repository("someone/course-fork", checkout)
    before = _texts(checkout)
    assert repository.set_repository("someone/course-fork", checkout) == []
    assert _texts(checkout) == before


def test_an_address_that_is_not_owner_slash_name_is_refused(checkout):
    with pytest.raises(ValueError, match="OWNER/NAME"):
        repository.set_repository("https://github.com/someone/course-fork", checkout)
