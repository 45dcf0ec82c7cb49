"""What the samplers of both families share: classifier-free guidance at a compute budget, per-step
budgets, image output.

Samplers never call a network directly: they take a callable `fn(*inputs, y, step)` (a denoiser for the
flow family, a logits function for the masked one) with `step` a `StepBudget`, so a new elastic axis (e.g.
latents) changes the budget and the network call, never the samplers.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..budget import Budget, BudgetSchedule
from ..codecs.pixel import to_uint8  # noqa: F401  (B, C, *S) in [-1, 1] -> uint8 (B, *S, C), for the samplers


def network_fn(model) -> Callable[..., torch.Tensor]:
    """model(*inputs, y, loops=…[, latents=…]) as fn(*inputs, y, budget)."""
    def call(*args) -> torch.Tensor:
        *inputs, y, budget = args
        return model(*inputs, y, **budget.model_kwargs())
    return call


def guided_call(model_fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], y: torch.Tensor,
                cond: Budget, uncond: Budget | None = None, cfg: float = 1.0, *, null_label: int | None = None,
                upcast: bool = False, autoguide: bool = False) -> torch.Tensor:
    """Guidance u + cfg·(c − u) of model_fn(*inputs, y, budget); cfg = 1 is plain conditional.

    The conditional branch c runs at `cond`, the guiding one u at `uncond` (None: `cond`) on the null label
    (classifier-free guidance; ELIT's CCFG when `uncond` is smaller) or, with `autoguide`, on the same label
    (autoguidance: a cheaper budget of the same model guides it). Equal budgets make one batched call on the
    inputs repeated; different budgets make two calls. `upcast` mixes in fp32."""
    if not isinstance(cond, Budget) or not (uncond is None or isinstance(uncond, Budget)):
        raise TypeError(f"guided_call takes Budgets (cond, uncond), got {cond!r}, {uncond!r}: wrap a loop count "
                        f"as Budget(loops) and pass the guidance scale as cfg=")
    if cfg == 1.0:
        out = model_fn(*inputs, y, cond)
        return out.float() if upcast else out
    if autoguide:
        null = y
    elif null_label is None:
        raise ValueError("classifier-free guidance needs the model's null label (null_label=model.null_label)")
    else:
        null = torch.full_like(y, null_label)
    if uncond is None or uncond == cond:
        both = model_fn(*(torch.cat([a, a]) for a in inputs), torch.cat([y, null]), cond)
        c, u = (both.float() if upcast else both).chunk(2)
    else:
        c, u = model_fn(*inputs, y, cond), model_fn(*inputs, null, uncond)
        if upcast:
            c, u = c.float(), u.float()
    return u + cfg * (c - u)


def guided_fn(model, cfg: float, upcast: bool = False) -> Callable[..., torch.Tensor]:
    """The sampler-facing callable of a network: fn(*inputs, y, step: StepBudget) -> guided output."""
    call, null = network_fn(model), getattr(model, "null_label", None)

    def fn(*args) -> torch.Tensor:
        *inputs, y, step = args
        return guided_call(call, tuple(inputs), y, step.cond, step.uncond, cfg, null_label=null, upcast=upcast,
                           autoguide=step.guide == "autoguidance")
    return fn


def loop_schedule(loops: int | Sequence[int], steps: int) -> list[int]:
    """One loop count per sampling step: an int for every step, or a sequence of exactly `steps` counts
    (validated by Budget: BudgetError, a ValueError)."""
    return BudgetSchedule.of(loops, steps).loops

