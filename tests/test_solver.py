"""DPM-Solver++ with its coefficients computed before the loop gives the scheduler's own steps, with a few operations
on the latents and none on the host."""

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from torch.utils._python_dispatch import TorchDispatchMode

import helpers as h
from helpers.solver import PrecomputedDPMSolver, remove_precomputed_solver, use_precomputed_solver

CONFIG = {"beta_start": 0.0015, "beta_end": 0.0195, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
          "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading"}  # AudioLDM 2's


class _Operations(TorchDispatchMode):
    """Every tensor operation run inside the block: (name, whether it ran on the latents' shape)."""

    def __init__(self, shape):
        super().__init__()
        self.shape, self.seen = tuple(shape), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.seen.append((str(func), tuple(getattr(out, "shape", ())) == self.shape))
        return out


def _run(scheduler, steps, dtype=torch.float32, *, count=False):
    scheduler.set_timesteps(steps)
    scheduler.set_begin_index(0)  # as rung 7 tells it (h.recipe.start_at_the_first_step): no search for step 0
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 8, 32, 16, generator=generator).to(dtype)
    counted = []
    for t in scheduler.timesteps:
        eps = torch.randn(sample.shape, generator=generator).to(dtype)
        with _Operations(sample.shape) as operations:
            sample = scheduler.step(eps, t, sample).prev_sample
        counted.append(operations.seen)
    return sample, counted


@pytest.mark.parametrize("steps", [1, 2, 4, 10, 20, 25])  # first order at the first and last steps; 15+ differs
@pytest.mark.parametrize("extra", [{}, {"use_karras_sigmas": True}, {"lower_order_final": False,
                                                                       "final_sigmas_type": "sigma_min"}])
def test_every_step_is_the_schedulers_own(steps, extra):
    own, _ = _run(DPMSolverMultistepScheduler(**CONFIG, **extra), steps)
    ours, _ = _run(PrecomputedDPMSolver(**CONFIG, **extra), steps)
    # float32's rounding of samples that grow to hundreds here (the noise is random, not a model's): both runs are as
    # far from a float64 run of the scheduler as from each other
    torch.testing.assert_close(ours, own, rtol=0, atol=2e-6 * float(own.abs().max()))


def test_a_step_is_a_few_operations_on_the_latents_and_none_on_the_host():
    _, own = _run(DPMSolverMultistepScheduler(**CONFIG), 20, torch.float16)
    ours_sample, ours = _run(PrecomputedDPMSolver(**CONFIG), 20, torch.float16)
    assert ours_sample.dtype == torch.float16
    own_host = [sum(not latent for _, latent in step) for step in own]
    assert min(own_host) > 20  # the scheduler's own step: dozens of small operations on 0-dimensional tensors
    for step in ours:
        assert all(latent for _, latent in step) and len(step) <= 8, step  # every operation on the latents


def test_another_configuration_runs_the_schedulers_own_step():
    other = {"solver_order": 3, "solver_type": "heun"}
    scheduler = PrecomputedDPMSolver(**CONFIG, **other)
    own, _ = _run(DPMSolverMultistepScheduler(**CONFIG, **other), 10)
    ours, _ = _run(scheduler, 10)
    assert scheduler.coefficients is None
    torch.testing.assert_close(ours, own)


def test_a_loop_that_starts_midway_takes_the_schedulers_steps():
    def run(scheduler):
        scheduler.set_timesteps(10)
        scheduler.set_begin_index(4)  # as an image-to-image pipeline starts
        sample = torch.ones(1, 8, 4, 4)
        for t in scheduler.timesteps[4:]:
            sample = scheduler.step(torch.full_like(sample, 0.5), t, sample).prev_sample
        return sample

    torch.testing.assert_close(run(PrecomputedDPMSolver(**CONFIG)), run(DPMSolverMultistepScheduler(**CONFIG)))


def test_the_pipeline_with_the_precomputed_solver_makes_the_same_clip(tiny_pipe):
    tiny_pipe.scheduler = DPMSolverMultistepScheduler.from_config(tiny_pipe.scheduler.config)
    before = h.generate(tiny_pipe, num_inference_steps=5, audio_length_in_s=1.28)
    assert use_precomputed_solver(tiny_pipe) and type(tiny_pipe.scheduler) is PrecomputedDPMSolver
    after = h.generate(tiny_pipe, num_inference_steps=5, audio_length_in_s=1.28)
    remove_precomputed_solver(tiny_pipe)
    assert type(tiny_pipe.scheduler) is DPMSolverMultistepScheduler
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_a_step_compiles_to_one_graph_that_serves_every_step():
    """The numbers are tensors, not Python floats, so Inductor does not bake them in: one graph for the first step (no
    clean latent before it) and one for all the others, each giving the eager step."""
    from torch._dynamo.testing import CompileCounterWithBackend

    from helpers.solver import dpm_solver_update

    torch._dynamo.reset()
    graphs = CompileCounterWithBackend("inductor")
    compiled = torch.compile(dpm_solver_update, fullgraph=True, backend=graphs)
    scheduler = PrecomputedDPMSolver(**CONFIG)
    scheduler.set_timesteps(20)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 8, 32, 16, generator=generator)
    previous = None
    for numbers in scheduler.coefficients:
        eps = torch.randn(sample.shape, generator=generator)
        expected, x0 = dpm_solver_update(sample, eps, previous, *numbers)
        ours, ours_x0 = compiled(sample, eps, previous, *numbers)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
        torch.testing.assert_close(ours_x0, x0, rtol=1e-5, atol=1e-5 * float(x0.abs().max()))
        sample, previous = expected, x0
    assert graphs.frame_count == 2
