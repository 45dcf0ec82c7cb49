"""One ILSD training step, shared by the trainer and the benchmark: the step plan, the loss, the guard.

    L = GT(teacher @ L_max) + λ·GT(student @ L_int) + (1 - λ)·Dist(student, stopgrad(teacher))

`plan_step` decides what step s does (loop count, exits, L_int, λ, latent budgets) from (train config, s) alone,
so every rank and a resumed run agree; `compute_loss` runs the family's network once (twice for the
`latent_teacher=full` ablation: student at (L_int, J̃), teacher at (L_max, J_max)) and composes the loss;
`check_step` reads the loss, the gradient norm and the weight norms to the host in ONE transfer and stops
a step that went wrong before anything can save it.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from ..errors import TrainingError
from ..objectives.ilsd import draw_latents, draw_student_loops, ilsd_lambda, ilsd_loss
from ..precision import autocast  # noqa: F401  (re-exported: the trainer's and the benchmark's autocast)


@dataclass(frozen=True)
class StepPlan:
    """What one training step computes."""
    loops: int  # loops of the forward pass: L_max, or 1 for the baseline (N·L unique blocks)
    exits: tuple[int, ...]  # loop exits returned: (L_int, L_max) for ILSD, (loops,) otherwise
    l_int: int | None  # the student's loop count (ILSD only)
    lam: float | None  # λ of the curriculum (ILSD only)
    latents: int | None = None  # J̃, latents per group of the step (the student's; models with a latent interface)
    teacher_latents: int | None = None  # the teacher's J in a second forward (latent_teacher=full, J̃ < J_max);
    # None: the teacher shares the student's forward at J̃

    @property
    def calls(self) -> list[tuple[int, tuple[int, ...], int | None]]:
        """The step's network calls as (loops, exits, latents): one to all exits, or, when the teacher runs
        at its own latent budget, the student's (L_int, (L_int,), J̃) then the teacher's (L_max, (L_max,), J)."""
        if self.teacher_latents is None:
            return [(self.loops, self.exits, self.latents)]
        return [(self.l_int, (self.l_int,), self.latents), (self.loops, (self.loops,), self.teacher_latents)]


def plan_step(t, step: int, latent_range: tuple[int, int] | None = None, full_latents: int | None = None
              ) -> StepPlan:
    """The plan of step `step` for a TrainConfig `t` (mode, loops, min_loops, seed, steps, lambda_decay,
    latent_teacher); `latent_range` (J_min, J_max of the draw; `Config.latent_range`) of a latent model adds
    the step's J̃, drawn from (seed, step) on its own stream, so the loop draw is the same with or without it.
    `full_latents` (the model's J_max; None: the draw's J_max) is the teacher's budget under
    latent_teacher=full, which gets a second forward only when J̃ < J_max."""
    loops = 1 if t.mode == "baseline" else t.loops
    latents = None if latent_range is None else draw_latents(t.seed, step, *latent_range)
    if t.mode != "ilsd":
        return StepPlan(loops, (loops,), None, None, latents)
    l_int = draw_student_loops(t.seed, step, t.min_loops, loops)
    teacher = None
    if getattr(t, "latent_teacher", "same") == "full" and latents is not None:
        j_max = latent_range[1] if full_latents is None else full_latents
        teacher = j_max if latents < j_max else None  # at J̃ = J_max one forward serves both
    return StepPlan(loops, (l_int, loops), l_int, ilsd_lambda(step, t.steps, t.lambda_decay), latents, teacher)


def compute_loss(family, net, batch: dict, plan: StepPlan,
                 amp: contextlib.AbstractContextManager | None = None) -> tuple[torch.Tensor, dict]:
    """One forward pass to the plan's exits (under `amp`) and the loss -> (loss (), {term: detached ()}).

    `family` gives forward(net, batch, loops, exits[, latents]) -> [pred per exit], gt_loss(pred, batch) and
    dist_loss(student, teacher, batch); `latents` is passed only when the plan has a latent budget, so student
    and teacher both run at J̃ in one forward, unless `plan.teacher_latents` is set: then the student runs to
    L_int at J̃ and the teacher to L_max at teacher_latents in a second forward (both keep their gradients;
    the distillation target is detached in `ilsd_loss` as always)."""
    preds = []  # one prediction per exit: [pred], or [student, teacher]
    with amp if amp is not None else contextlib.nullcontext():
        for loops, exits, latents in plan.calls:  # the family passes latents on only when set
            preds += family.forward(net, batch, loops, exits, latents)
    gt = lambda p: family.gt_loss(p, batch)  # noqa: E731
    if plan.l_int is None:
        loss = gt(preds[0])
        return loss, {"gt_teacher": loss.detach()}
    dist = lambda s, te: family.dist_loss(s, te, batch)  # noqa: E731
    return ilsd_loss(preds[0], preds[1], plan.lam, gt, dist)


def step_gflops(family, plan: StepPlan) -> float | None:
    """Analytic forward GFLOPs per sample of the plan's network calls (at their loops, exits and latents), or
    None for a family without an analytic count (`family.forward_flops`)."""
    count = getattr(family, "forward_flops", None)
    if count is None:
        return None
    return sum(count(loops, exits, latents) for loops, exits, latents in plan.calls) / 1e9


def clip_gradients(params: list[torch.Tensor], grad_clip: float) -> torch.Tensor:
    """Clip the global gradient norm to `grad_clip` (0 = no clipping) -> the norm before clipping (), on device."""
    return torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))


@torch.no_grad()
def weight_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all parameters together -> (), on the device (no host sync)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params)))


@dataclass
class StepHealth:
    """The step's scalars as read to the host by `check_step`."""
    loss: float
    grad_norm: float
    weights_before: float
    weights_after: float


def check_step(step: int, loss: torch.Tensor, grad_norm: torch.Tensor, before: torch.Tensor,
               after: torch.Tensor, lr: float) -> StepHealth:
    """Read the four scalars in one host transfer; raise TrainingError for a non-finite loss or gradient, or
    an update that made the weights non-finite or more than doubled their norm (an explosion, whatever the
    loss says). Called before the EMA update and before any checkpoint, so a bad step never reaches one."""
    h = StepHealth(*torch.stack([loss.detach().float(), grad_norm.float(), before, after]).tolist())
    if not _finite(h.loss):
        raise TrainingError(f"the loss became {h.loss} at step {step}: lower train.lr, keep train.grad_clip > 0 "
                            f"or try train.precision=fp32; the last good checkpoint is kept")
    if not _finite(h.grad_norm):
        raise TrainingError(f"the gradient became {h.grad_norm} at step {step}: lower train.lr or try "
                            f"train.precision=fp32; the last good checkpoint is kept")
    if not _finite(h.weights_after) or h.weights_after > 2 * h.weights_before + 1.0:
        raise TrainingError(f"step {step} made the weights explode (norm {h.weights_before:.3g} -> "
                            f"{h.weights_after:.3g}): lower train.lr (now {lr:.3g}) or keep train.grad_clip > 0; "
                            f"the last good checkpoint is kept")
    return h


def _finite(x: float) -> bool:
    return math.isfinite(x)


@dataclass
class StepResult:
    """What a training step reports. `loss` and `grad_norm` were read by the guard; the loss terms stay on
    the device until `parts` (or `logged`) is read, which the trainer does at log steps only."""
    loss: float
    terms: dict  # {"gt_teacher": (), ...} detached tensors on the device (or floats)
    student_loops: int | None
    lam: float | None
    grad_norm: float
    loss_tensor: torch.Tensor | None = None  # () detached, for the all-reduced log value
    plan: StepPlan | None = None  # what the step computed (its latent budgets, for the log)
    _parts: dict | None = field(default=None, repr=False)

    @property
    def parts(self) -> dict[str, float]:
        """The loss terms as floats (one host read, then cached)."""
        if self._parts is None:
            self._parts = _read(self.terms)
        return self._parts

    def logged(self, reduce=None) -> dict[str, float]:
        """{"loss", *terms} as floats, each first passed through `reduce` (e.g. the mean over ranks) as one
        stacked tensor: one collective and one host read."""
        if reduce is None or self.loss_tensor is None:
            return {"loss": self.loss, **self.parts}
        values = torch.stack([self.loss_tensor.float()] + [torch.as_tensor(v).float().to(self.loss_tensor.device)
                                                           for v in self.terms.values()])
        return dict(zip(["loss", *self.terms], reduce(values).tolist()))


def _read(terms: dict) -> dict[str, float]:
    tensors = [v for v in terms.values() if isinstance(v, torch.Tensor)]
    if not tensors:
        return {k: float(v) for k, v in terms.items()}
    values = torch.stack([torch.as_tensor(v).float().to(tensors[0].device) for v in terms.values()]).tolist()
    return dict(zip(terms, values))
