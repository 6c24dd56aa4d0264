"""Every figure the README quotes names the results file it comes from, and says "within noise" where it is.

A figure table (a header with "median s" or "s per call") must have a ``results/`` path in the paragraph just
above it; each of its medians and spreads must be a figure of that file (of any ``.md`` file in that folder when
the path is a folder's README), to the digits the README gives; and where it has a speed-up column, a row whose
median differs from the first row's by no more than the larger of their spreads must read "within noise".
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
RESULTS_PATH = re.compile(r"results/[\w./-]*[\w/]")
FIGURE_COLUMNS = ("median s", "s per call", "spread s")


def results_paths(text: str) -> list[str]:
    """Every ``results/...`` path written in ``text`` (in a link, in backticks or bare), in order."""
    return [match.group(0) for match in RESULTS_PATH.finditer(text)]


def figure_tables(text: str) -> list[tuple[str, list[dict[str, str]]]]:
    """(the paragraph above, the rows as dicts) for every Markdown table with a median or per-call column."""
    lines, tables = text.splitlines(), []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        header, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start:i]]
        if not any(column in header for column in FIGURE_COLUMNS[:2]):
            continue
        above = start - 1
        while above > 0 and lines[above - 1].strip():
            above -= 1
        paragraph = "\n".join(lines[above:start])
        tables.append((paragraph, [dict(zip(header, row)) for row in rows[1:]]))  # rows[0]: the | --- | line
    return tables


def figures_in(path: str) -> list[float]:
    """Every number in the results file, or in every .md file of the folder whose README.md is named."""
    target = ROOT / path
    files = sorted(target.parent.glob("*.md")) if target.name == "README.md" else [target]
    return [float(n) for file in files for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", file.read_text())]


def quoted_from(figure: str, numbers: list[float]) -> bool:
    """True when some number of the file, rounded to ``figure``'s decimals, is ``figure``."""
    decimals = len(figure.split(".")[1]) if "." in figure else 0
    return any(round(number, decimals) == round(float(figure), decimals) for number in numbers)


def test_every_results_path_the_readme_names_exists():
    paths = results_paths(README)
    assert len(paths) >= 8  # the README quotes the GPU runs, the CPU runs and the command's memory check
    assert [path for path in paths if not (ROOT / path).exists()] == []


def test_the_readme_has_its_figure_tables():
    assert len(figure_tables(README)) >= 3  # the GPU ladder, the CPU ladder, throughput


def test_every_figure_table_with_speedups_has_the_spreads_that_judge_them():
    for _, rows in figure_tables(README):
        speedups = [column for column in rows[0] if column.startswith("speed-up")]
        assert speedups in ([], ["speed-up over rung 1"]) and (not speedups or "spread s" in rows[0]), rows[0]


@pytest.mark.parametrize("paragraph, rows", figure_tables(README))
def test_every_figure_table_names_its_results_file_and_quotes_it(paragraph, rows):
    paths = [path for path in results_paths(paragraph) if (ROOT / path).is_file()]
    assert paths, f"no results file named in the paragraph above the table:\n{paragraph}"
    numbers = figures_in(paths[0])
    for row in rows:
        for column in FIGURE_COLUMNS:
            if column in row:
                assert quoted_from(row[column], numbers), f"{row[column]} ({column}) is not in {paths[0]}: {row}"


@pytest.mark.parametrize("paragraph, rows", [table for table in figure_tables(README)
                                             if "speed-up over rung 1" in table[1][0]])
def test_every_speedup_in_a_readme_table_follows_the_noise_rule(paragraph, rows):
    first = rows[0]
    base, base_spread = float(first["median s"]), float(first["spread s"])
    for row in rows[1:]:
        median, spread, said = float(row["median s"]), float(row["spread s"]), row["speed-up over rung 1"]
        if abs(median - base) <= max(spread, base_spread):
            assert said == "within noise", row
        else:
            assert said.endswith("x") and float(said[:-1]) == pytest.approx(base / median, rel=0.01), row


def test_the_checks_catch_a_figure_from_another_run_and_a_ratio_inside_the_noise():
    """The first H200 run's 13.42 s is not in the second run's results file; 0.89x with spreads of 1.4 and 3.4 s is
    noise."""
    assert not quoted_from("13.42", figures_in("results/nvidia-h200-2026-11-26-run2/results-08.md"))
    assert quoted_from("12.4", figures_in("results/nvidia-h200-2026-11-26-run2/results-08.md"))
    table = ("run [`results/x.md`](results/x.md):\n\n| rung | median s | spread s | speed-up over rung 1 |\n"
             "| --- | --- | --- | --- |\n| 1 | 13.42 | 1.38 | |\n| 2 | 15.10 | 3.38 | 0.89x |\n")
    (paragraph, rows), = figure_tables(table)
    assert results_paths(paragraph) == ["results/x.md", "results/x.md"]
    with pytest.raises(AssertionError):
        test_every_speedup_in_a_readme_table_follows_the_noise_rule(paragraph, rows)
