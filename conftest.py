"""Test set-up: every test and every notebook runs offline on a tiny random checkpoint.

The checkpoint is built once per session, before nbval starts its kernels, so that the kernels
inherit ``AUDIOLDM2_MODEL`` pointing at it (``pytest_sessionstart`` runs before any collector).
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="audioldm2-tests-"))
TINY_CHECKPOINT = _SESSION_DIR / "tiny-audioldm2"


def pytest_sessionstart(session):
    from helpers.checkpoints import write_tiny_checkpoint

    write_tiny_checkpoint(TINY_CHECKPOINT)
    os.environ.update({
        "AUDIOLDM2_MODEL": str(TINY_CHECKPOINT),
        "AUDIOLDM2_RESULTS": str(_SESSION_DIR / "results.jsonl"),
        # Notebooks run in smoke mode here: capped steps and lengths keep the suite within minutes.
        "AUDIOLDM2_SMOKE": os.environ.get("AUDIOLDM2_SMOKE", "1"),
        # CI has no GPU: let the notebooks' float16 and bfloat16 code run on the CPU (a reader's CPU refuses it).
        "AUDIOLDM2_TESTS_HALF_ON_CPU": "1",
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "TQDM_DISABLE": "1",
    })


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    return TINY_CHECKPOINT


@pytest.fixture(scope="session")
def tiny_pipe(tiny_checkpoint):
    from helpers.loading import load_pipeline

    return load_pipeline(tiny_checkpoint, device="cpu")
