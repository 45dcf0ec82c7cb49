"""Intra-Loop Self Distillation: the loss over loop exits, the student-loop and latent-budget draws and the λ
curriculum.

    L = GT(teacher @ L_max) + λ·GT(student @ L_int) + (1 - λ)·Dist(student, stopgrad(teacher))

`vanilla` keeps only the first term; `baseline` (N·L unique blocks run once) does the same.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..rng import step_generator

MODES = ("ilsd", "vanilla", "baseline")


def draw_student_loops(seed: int, step: int, min_loops: int, max_loops: int) -> int:
    """L_int ~ U{min_loops, …, max_loops - 1}, one draw per training step, the same on every rank."""
    if not 1 <= min_loops < max_loops:
        raise ValueError(f"ILSD needs 1 <= min_loops < loops, got min_loops={min_loops}, loops={max_loops}")
    g = step_generator(seed, step, stream=1)
    return int(torch.randint(min_loops, max_loops, (1,), generator=g))


def draw_latents(seed: int, step: int, min_latents: int, max_latents: int) -> int:
    """J̃ ~ U{min_latents, …, max_latents}: the latents per group of training step `step` (ELIT's tail drop),
    one draw per step on its own stream (2), the same on every rank and on resume."""
    if not 1 <= min_latents <= max_latents:
        raise ValueError(f"the latent draw needs 1 <= min_latents <= max_latents, got {min_latents}, {max_latents}")
    g = step_generator(seed, step, stream=2)
    return int(torch.randint(min_latents, max_latents + 1, (1,), generator=g))


def ilsd_lambda(step: int, total_steps: int, decay_fraction: float = 1.0) -> float:
    """λ decays linearly from 1 at step 0 to 0 at `decay_fraction·total_steps`, then stays 0."""
    end = max(1.0, decay_fraction * total_steps)
    return max(0.0, 1.0 - step / end)


def ilsd_loss(student: torch.Tensor, teacher: torch.Tensor, lam: float,
              gt: Callable[[torch.Tensor], torch.Tensor],
              dist: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Combine the three ILSD terms. `dist` must stop the gradient into its second argument."""
    gt_teacher = gt(teacher)
    gt_student = gt(student)
    distill = dist(student, teacher.detach())
    loss = gt_teacher + lam * gt_student + (1 - lam) * distill
    parts = {"gt_teacher": gt_teacher.detach(), "gt_student": gt_student.detach(), "distill": distill.detach()}
    return loss, parts


__all__ = ["MODES", "draw_latents", "draw_student_loops", "ilsd_lambda", "ilsd_loss", "step_generator"]
