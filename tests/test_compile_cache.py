"""helpers.compile_cache: one folder for what torch.compile compiled, found again by the next process.

The main test compiles the same small model with Inductor's CPU backend in two processes, one after the other, with
the same fresh folder: the second must say it found the cache, load the graph from it (torch's own hit counter: no
timing involved), and reach its first result sooner. The rest is fast: no compilation.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from helpers import compile_cache, compiling, settings
from helpers.compile_cache import Lookups
from helpers.errors import CompileCacheError, CourseError

ROOT = Path(__file__).resolve().parent.parent

# One process of the main test: point the cache at argv[1], compile a small convolutional model with Inductor on the
# CPU, time its first call (the compilation) and say what the cache gave it, as JSON on the last line.
FIRST_CALL = textwrap.dedent("""
    import json, sys, time
    import torch
    from helpers import compile_cache

    compile_cache.use_compile_cache(sys.argv[1])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.GELU(),
                                torch.nn.Conv2d(8, 4, 3, padding=1), torch.nn.LayerNorm(16))
    compiled = torch.compile(model, fullgraph=True)  # Inductor: C++ kernels on a CPU
    before = compile_cache.lookups()
    with torch.no_grad():
        start = time.perf_counter()
        compiled(torch.randn(2, 4, 16, 16))
        first_s = time.perf_counter() - start
    found = compile_cache.lookups() - before
    print(json.dumps({"first_s": first_s, "hits": found.hits, "misses": found.misses, "said": str(found)}))
""")


def _first_call(folder: Path) -> tuple[str, dict]:
    """Run FIRST_CALL in a new Python process: (what it printed before its result, its result)."""
    env = {name: value for name, value in os.environ.items()  # no cache settings from outside this test
           if not name.startswith(("TORCHINDUCTOR_", "TRITON_")) and name != settings.COMPILE_CACHE_ENV}
    done = subprocess.run([sys.executable, "-c", FIRST_CALL, str(folder)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    *said, result = done.stdout.strip().splitlines()
    return "\n".join(said), json.loads(result)


@pytest.mark.skipif(not compiling.compile_support("cpu")[0], reason=compiling.compile_support("cpu")[1])
def test_a_second_process_compiling_the_same_model_finds_the_cache_and_starts_sooner(tmp_path):
    folder = tmp_path / "compile"
    said_cold, cold = _first_call(folder)
    said_warm, warm = _first_call(folder)

    assert said_cold == f"compile cache: {folder} (empty: the first compile will take minutes)"
    assert (cold["hits"], cold["misses"]) == (0, 1), cold
    assert cold["said"] == "cold: 1 graph(s) compiled and stored"
    assert compile_cache.stored_graphs(folder) == 1

    assert said_warm == f"compile cache: {folder} (1 compiled graph(s) found)"
    assert (warm["hits"], warm["misses"]) == (1, 0), warm  # torch's counter: loaded, not compiled
    assert warm["said"] == "warm: 1 graph(s) loaded from the compile cache"
    # The cold call generates and compiles C++ (15 to 23 s on this project's 2 busy cores), the warm one loads it
    # (4 to 5 s): only the order is asserted, which a busy machine could upset only by slowing the warm process
    # four times as much as the cold one.
    assert warm["first_s"] < cold["first_s"], (cold, warm)


# --------------------------------------------------------------------------------------------
# Fast: the folder, the line, the counts
# --------------------------------------------------------------------------------------------
@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    """No cache settings from outside; whatever the test sets in os.environ is undone after it."""
    for name in (compile_cache.INDUCTOR_CACHE_ENV, settings.COMPILE_CACHE_ENV, settings.CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_the_folder_is_the_courses_unless_a_variable_moves_it(clean_environment, monkeypatch, tmp_path):
    assert settings.compile_cache_folder() == tmp_path / "home" / ".cache" / "audioldm2-faster" / "compile"
    monkeypatch.setenv(settings.CACHE_ENV, str(tmp_path / "course"))
    assert settings.compile_cache_folder() == tmp_path / "course" / "compile"
    monkeypatch.setenv(settings.COMPILE_CACHE_ENV, str(tmp_path / "drive"))
    assert settings.compile_cache_folder() == tmp_path / "drive"


def test_use_compile_cache_points_inductor_at_the_folder_and_says_what_it_holds(clean_environment, tmp_path,
                                                                               capsys):
    folder = compile_cache.use_compile_cache(tmp_path / "cache")
    assert folder == (tmp_path / "cache").resolve() and folder.is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder)
    assert capsys.readouterr().out == f"compile cache: {folder} (empty: the first compile will take minutes)\n"

    for key in ("ab/fabc/entry1", "ab/fabc/entry2", "cd/fcde/entry1"):  # Inductor's layout: fxgraph/xx/KEY/ENTRY
        (folder / "fxgraph" / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / "fxgraph" / key).write_bytes(b"graph")
    assert compile_cache.use_compile_cache(folder, quiet=True) == folder
    assert capsys.readouterr().out == ""
    assert compile_cache.describe(folder) == f"compile cache: {folder} (3 compiled graph(s) found)"


def test_the_default_folder_comes_from_the_settings(clean_environment, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(settings.COMPILE_CACHE_ENV, str(tmp_path / "moved"))
    assert compile_cache.use_compile_cache() == (tmp_path / "moved").resolve()
    assert str(tmp_path / "moved") in capsys.readouterr().out


def test_a_folder_that_cannot_be_made_is_one_line(clean_environment, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CompileCacheError) as raised:
        compile_cache.use_compile_cache(blocker / "compile")
    message = str(raised.value)
    assert isinstance(raised.value, CourseError) and "\n" not in message
    assert str(blocker / "compile") in message and settings.COMPILE_CACHE_ENV in message
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") != str(blocker / "compile")


def test_switching_folders_after_compiling_says_so(clean_environment, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "torch-default"))
    monkeypatch.setattr(compile_cache, "lookups", lambda: Lookups(misses=1))  # as after one compilation
    compile_cache.use_compile_cache(tmp_path / "course", quiet=True)
    said = capsys.readouterr().out
    assert said.startswith("note: this process compiled with Inductor before, into ") and said.count("\n") == 1
    compile_cache.use_compile_cache(tmp_path / "course", quiet=True)  # the same folder again: nothing to say
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("found, said", [
    (Lookups(), "no Inductor graph compiled"),
    (Lookups(misses=2), "cold: 2 graph(s) compiled and stored"),
    (Lookups(hits=3), "warm: 3 graph(s) loaded from the compile cache"),
    (Lookups(hits=1, misses=1),
     "partly warm: 1 graph(s) loaded from the compile cache, 1 graph(s) compiled and stored"),
    (Lookups(bypassed=1), "cold: 1 graph(s) compiled that Inductor cannot cache"),
])
def test_lookups_say_cold_or_warm(found, said):
    assert str(found) == said


def test_lookups_are_taken_around_a_call():
    assert Lookups(5, 2, 1) - Lookups(4, 2, 0) == Lookups(hits=1, misses=0, bypassed=1)
    assert isinstance(compile_cache.lookups(), Lookups)


# --------------------------------------------------------------------------------------------
# Wired in: every notebook that compiles with Inductor names the folder first
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda path: path.name)
def test_a_notebook_that_compiles_uses_the_compile_cache_before_it_compiles(path):
    code = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
    inductor = [line for line in code.splitlines() if "torch.compile(" in line and 'backend="eager"' not in line
                and not line.lstrip().startswith("#")]
    if not inductor:
        return
    assert "h.use_compile_cache()" in code, f"{path.name} compiles with Inductor: call h.use_compile_cache() first"
    assert code.index("h.use_compile_cache()") < code.index(inductor[0].strip())
