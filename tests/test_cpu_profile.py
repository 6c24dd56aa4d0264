"""The CPU profile times fewer steps and keeps the blog's count for what the learner hears; labels say which is which.

The profile is on without a CUDA GPU (and neither smoke mode nor AUDIOLDM2_FULL=1): the tests pretend either way.
"""

import pytest
import torch

from helpers import settings


@pytest.fixture
def cpu_profile(monkeypatch):
    monkeypatch.delenv(settings.SMOKE_ENV, raising=False)
    monkeypatch.delenv(settings.FULL_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert settings.cpu_profile()


def test_the_cpu_profile_times_fewer_steps_and_says_the_blogs_count(cpu_profile):
    assert [settings.steps(n) for n in (200, 20, 10, 3)] == [40, 4, 2, 3]  # from 10 steps up, 5x fewer
    assert settings.steps_label(200) == "40 steps (the blog: 200)"
    assert settings.steps_label(20) == "4 steps (the blog: 20)"
    assert settings.steps_label(3) == "3 steps"  # a count of the course's own, not the blog's: nothing to name
    assert settings.seconds_label(10.24) == "2.56 s (the blog: 10.24 s)"


def test_what_the_learner_hears_keeps_the_blogs_step_count(cpu_profile):
    for wanted in (10, 15, 20, 25, 50, 200):
        assert settings.steps_to_hear(wanted) == wanted >= 10  # never a solver below 10 steps as the recipe
    assert settings.steps_label(20, settings.steps_to_hear(20)) == "20 steps"
    assert "made once more at the blog's step count" in settings.smoke_banner()


def test_smoke_mode_caps_what_it_plays_too_and_says_so(monkeypatch):
    monkeypatch.setenv(settings.SMOKE_ENV, "1")
    assert settings.steps_to_hear(20) == settings.SMOKE_MAX_STEPS
    assert settings.steps_label(20, settings.steps_to_hear(20)) == "2 steps (the blog: 20)"


def test_a_gpu_runs_the_blogs_counts_everywhere(monkeypatch):
    monkeypatch.delenv(settings.SMOKE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not settings.cpu_profile()
    assert settings.steps(20) == settings.steps_to_hear(20) == 20 and settings.steps_label(200) == "200 steps"
