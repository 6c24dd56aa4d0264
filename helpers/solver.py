"""DPM-Solver++ with every step's coefficients computed before the loop: a step is a few operations on the latents.

``DPMSolverMultistepScheduler.step`` works out its coefficients at every step, from the noise levels: about fifty
small tensor operations on the host (powers, logarithms, an exponential, on 0-dimensional CPU tensors) around a
dozen on the latents. On a CPU that is noise beside a UNet step. On a fast GPU, where a compiled UNet step is a
single CUDA-graph replay of a few milliseconds, it is host time in every step of the loop: the Python and the
dispatcher's work for some sixty operations.

The coefficients depend only on the noise levels, so they can all be computed once, in ``set_timesteps``. For the
configuration the course uses (DPM-Solver++, second order, midpoint, noise prediction) a step then reads

    x0   = (sample - sigma_s * eps) / alpha_s              # the clean latent the model's noise implies
    next = a * sample + b * x0 + c * previous_x0           # a, b, c: this step's numbers, worked out beforehand

which is the scheduler's own update, rearranged (first order at the first step and the last, as it does). The
result equals the scheduler's within float rounding (tests/test_solver.py); any other configuration runs the
scheduler's own step.

The numbers are kept as 0-dimensional float32 tensors on the latents' device, not as Python floats: an operation
reads them where they are (no copy to the GPU, no sync), and ``torch.compile`` sees a tensor whose value may change
from step to step, so :func:`dpm_solver_update` compiles to one graph that serves every step (a Python float would
be baked into the graph, one graph per step).
"""

from __future__ import annotations

import math

import torch
from diffusers import DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerOutput


class PrecomputedDPMSolver(DPMSolverMultistepScheduler):
    """``DPMSolverMultistepScheduler`` whose ``set_timesteps`` also computes every step's coefficients.

    Make one as you would the scheduler: ``PrecomputedDPMSolver.from_config(pipe.scheduler.config)``.
    """

    def set_timesteps(self, *args, **kwargs) -> None:
        super().set_timesteps(*args, **kwargs)
        if not precomputable(self.config):
            self.coefficients = None
            return
        # one table, made where the pipeline asked for the timesteps (the latents' device), and a view of each number
        table = torch.tensor(step_coefficients(self), dtype=torch.float32, device=self.timesteps.device)
        self.coefficients = [tuple(row.unbind()) for row in table.unbind()]

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None, variance_noise=None,
             return_dict: bool = True):
        if self.step_index is None:
            self._init_step_index(timestep)
        if self.coefficients is None or (self.lower_order_nums == 0 and self.step_index > 0):
            # another configuration, or a loop that starts midway (image-to-image): the scheduler's own step
            return super().step(model_output, timestep, sample, generator, variance_noise, return_dict)
        previous = self.model_outputs[-1]  # the clean latent of the step before (None at the first step)
        prev_sample, x0 = dpm_solver_update(sample, model_output, previous, *self.coefficients[self.step_index])
        self.model_outputs = [*self.model_outputs[1:], x0]
        self.lower_order_nums = min(self.lower_order_nums + 1, self.config.solver_order)
        self._step_index += 1
        return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)


def dpm_solver_update(sample: torch.Tensor, model_output: torch.Tensor, previous: torch.Tensor | None,
                      to_x0: torch.Tensor, minus_sigma: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                      c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step, given its numbers (0-dimensional tensors): ``(next sample, this step's clean latent)``.

    In float32, as the scheduler works, and back to the model's dtype. ``addcmul`` multiplies by a tensor and adds in
    one operation, so that a step is as few operations as with Python floats; ``previous`` is None at the first step.
    """
    sample = sample.to(torch.float32)
    x0 = torch.addcmul(sample, model_output, minus_sigma).mul_(to_x0)  # (sample - sigma_s eps) / alpha_s
    prev_sample = sample * a
    prev_sample.addcmul_(x0, b)
    if previous is not None:
        prev_sample.addcmul_(previous, c)
    return prev_sample.to(model_output.dtype), x0


def precomputable(config) -> bool:
    """True for the configuration :class:`PrecomputedDPMSolver` rearranges: DPM-Solver++ 2M, midpoint, noise
    prediction, no thresholding, no added noise (the pipeline's ``DPMSolverMultistepScheduler.from_config``)."""
    return (config.algorithm_type == "dpmsolver++" and config.solver_order == 2 and config.solver_type == "midpoint"
            and config.prediction_type == "epsilon" and not config.thresholding and config.variance_type is None)


def step_coefficients(scheduler: DPMSolverMultistepScheduler) -> list[tuple[float, float, float, float, float]]:
    """For each step: ``(1 / alpha_s, -sigma_s, a, b, c)`` of the module docstring's two lines.

    From the scheduler's own noise levels (``sigmas``) and its own rule for where it drops to first order (the first
    step, and the last: ``lower_order_final``, ``euler_at_final``, ``final_sigmas_type``); in float64.
    """
    config, sigmas = scheduler.config, scheduler.sigmas.double().tolist()
    steps = len(scheduler.timesteps)

    def alpha_sigma(sigma: float) -> tuple[float, float]:
        alpha = 1.0 / math.sqrt(sigma**2 + 1.0)
        return alpha, sigma * alpha

    def log_snr(sigma: float) -> float:  # lambda: log(alpha) - log(sigma), infinite at sigma 0
        alpha, sigma_t = alpha_sigma(sigma)
        return math.inf if sigma_t == 0 else math.log(alpha) - math.log(sigma_t)

    coefficients = []
    for i in range(steps):
        alpha_s, sigma_s = alpha_sigma(sigmas[i])
        alpha_t, sigma_t = alpha_sigma(sigmas[i + 1])
        h = log_snr(sigmas[i + 1]) - log_snr(sigmas[i])
        phi = alpha_t * (math.exp(-h) - 1.0)  # alpha_t * (exp(-h) - 1); -alpha_t at the last step to sigma 0
        last = i == steps - 1 and (config.euler_at_final or (config.lower_order_final and steps < 15)
                                   or config.final_sigmas_type == "zero")
        if i == 0 or last:  # first order: next = (sigma_t / sigma_s) sample - phi x0
            a, b, c = sigma_t / sigma_s, -phi, 0.0
        else:  # second order, midpoint: D1 = (x0 - previous) / r0, next = ... - phi x0 - phi D1 / 2
            r0 = (log_snr(sigmas[i]) - log_snr(sigmas[i - 1])) / h
            a, b, c = sigma_t / sigma_s, -phi * (1.0 + 0.5 / r0), phi * 0.5 / r0
        coefficients.append((1.0 / alpha_s, -sigma_s, a, b, c))
    return coefficients


def use_precomputed_solver(pipe) -> bool:
    """Give ``pipe`` a :class:`PrecomputedDPMSolver` in place of its ``DPMSolverMultistepScheduler``; True if it did.

    Only a plain DPM-Solver++ of the configuration :func:`precomputable` accepts is replaced (with the same config);
    :func:`remove_precomputed_solver` undoes it.
    """
    if type(pipe.scheduler) is not DPMSolverMultistepScheduler or not precomputable(pipe.scheduler.config):
        return isinstance(pipe.scheduler, PrecomputedDPMSolver)
    pipe.scheduler = PrecomputedDPMSolver.from_config(pipe.scheduler.config)
    return True


def remove_precomputed_solver(pipe) -> None:
    """Back to the pipeline's own ``DPMSolverMultistepScheduler``, with the same config."""
    if isinstance(pipe.scheduler, PrecomputedDPMSolver):
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
