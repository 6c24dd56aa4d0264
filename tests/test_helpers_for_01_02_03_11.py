"""The helpers notebooks 03 and 11 leave their device decisions to, each asked about an injected device: what a
peak-memory figure is on each device (03), which batch sizes to measure (11), and how the command runs (11)."""

import pytest
import torch

import helpers as h
from helpers.make_clips import notebook_launch


@pytest.fixture(autouse=True)
def not_a_smoke_run(monkeypatch):
    monkeypatch.delenv(h.settings.SMOKE_ENV, raising=False)


@pytest.mark.parametrize("device, sizes", [("cuda", [1, 2, 4, 8]), ("cuda:0", [1, 2, 4, 8]), ("cpu", [1, 2, 4]),
                                           ("mps", [1, 2, 4])])
def test_the_batch_sizes_follow_the_device_and_say_why(device, sizes):
    chosen, why = h.settings.batch_sizes(device)
    assert chosen == sizes and chosen[0] == 1  # a batch of 1 first: the baseline the others are set beside
    assert why and "\n" not in why


def test_a_smoke_run_tries_two_batch_sizes_on_any_device(monkeypatch):
    monkeypatch.setenv(h.settings.SMOKE_ENV, "1")
    for device in ("cuda", "cpu", "mps"):
        chosen, why = h.settings.batch_sizes(device)
        assert chosen == [1, 2] and "smoke" in why


def test_on_a_cpu_the_command_is_a_demonstration_of_two_processes_at_cut_settings():
    plan = notebook_launch("cpu", steps=4, seconds=2.56)
    assert plan.processes == 2
    assert plan.flags == ("--cpu", "--steps", "2", "--length", "2.56")
    assert "2 steps (the blog: 20)" in plan.why and "(the blog: 10.24 s)" in plan.why  # the cut named beside the blog's
    assert notebook_launch(torch.device("cpu"), steps=1, seconds=1.0).flags[1:] == ("--steps", "1", "--length", "1")


@pytest.mark.parametrize("gpus, processes", [(4, 4), (1, 1), (0, 1)])
def test_on_cuda_gpus_the_command_runs_the_recipe_one_process_per_gpu(gpus, processes):
    plan = notebook_launch("cuda", steps=20, seconds=10.24, gpus=gpus)
    assert plan.processes == processes
    assert plan.flags == ("--no-compile", "--steps", "20", "--length", "10.24")
    assert "--cpu" not in plan.flags and "20 steps" in plan.why and "(the blog" not in plan.why


def test_on_a_mac_the_command_runs_one_process_on_its_gpu():
    plan = notebook_launch("mps", steps=20, seconds=10.24, gpus=3)  # CUDA's count means nothing there
    assert plan.processes == 1 and "--cpu" not in plan.flags and "mps" in plan.why
