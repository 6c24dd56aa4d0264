"""scripts/gpu.sh on a CPU, as a dry run: the notebooks first (here notebook 00 alone), their verdicts and a zip, then
the benchmark in the time left, at most eight files in OUT, and notebooks that fail without stopping the bench.
(The verdicts of a run stopped by the time limit: tests/test_run_course.py.)"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _gpu_sh(tmp_path, tiny_checkpoint, **env):
    out = tmp_path / "out"
    variables = {**os.environ, "PYTHON": sys.executable, "AUDIOLDM2_MODEL": str(tiny_checkpoint), "DEADLINE": "20", "TOTAL": "400",
                 "AUDIOLDM2_CACHE": str(tmp_path / "cache"), **env}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu.sh"), "-", str(out)], capture_output=True, text=True,
                          timeout=420, env=variables, cwd=tmp_path)
    return out, done


@pytest.mark.slow(reason="scripts/gpu.sh with notebook 00 and a 20 s benchmark: about a minute")
def test_the_notebooks_then_the_bench_in_at_most_eight_files(tmp_path, tiny_checkpoint):
    out, done = _gpu_sh(tmp_path, tiny_checkpoint, ONLY="00", NOTEBOOKS_S="200")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file())
    assert len(files) <= 8, files
    assert {"notebooks.txt", "notebooks.zip", "bench/results.jsonl", "bench/summary.md", "environment.txt"} <= set(files)
    assert (out / "notebooks.txt").read_text().startswith("00_setup.ipynb: done in ")
    assert any(name.endswith("00_setup.ipynb") for name in zipfile.ZipFile(out / "notebooks.zip").namelist())
    rows = [json.loads(line) for line in (out / "bench" / "results.jsonl").read_text().splitlines()]
    assert rows[0]["kind"] == "machine" and rows[-1]["kind"] == "end"
    assert "the benchmark, deadline 20 s" in done.stdout


def test_notebooks_that_fail_never_stop_the_bench(tmp_path, tiny_checkpoint):
    out, done = _gpu_sh(tmp_path, tiny_checkpoint, ONLY="99", DEADLINE="12")  # no such notebook: the runner fails
    assert "no verdicts" in (out / "notebooks.txt").read_text()
    rows = [json.loads(line) for line in (out / "bench" / "results.jsonl").read_text().splitlines()]
    assert rows[0]["kind"] == "machine" and rows[-1]["kind"] == "end", done.stdout[-2000:]
