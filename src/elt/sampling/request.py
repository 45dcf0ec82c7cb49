"""What a caller asks of a family's sampler: one `SampleRequest`, and the `Sampler` that takes it.

`family.sampler(model, run_dir)` returns a `Sampler`; call it with a SampleRequest, or with the positional
arguments (labels, loops, steps, guidance, seed, batch_size, progress, precision) older call sites pass.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..budget import Budget, BudgetSchedule


@dataclass(frozen=True, eq=False)
class SampleRequest:
    """Samples for `labels` (N,): `steps` sampling steps at `loops` (an int, a Budget, one per step, or a
    BudgetSchedule), guidance scale `guidance`, the unconditional branch at `uncond` (None: as the
    conditional one). Sample i depends only on (seed, first_index + i). `batch_size` None: the family's
    default."""

    labels: torch.Tensor
    loops: int | Budget | Sequence[int | Budget] | BudgetSchedule
    steps: int
    guidance: float = 1.0
    uncond: int | Budget | Sequence[int | Budget] | None = None
    seed: int = 0
    batch_size: int | None = None
    precision: str = "fp32"  # "fp32" | "bf16" (autocast of the network)
    progress: Any = None  # anything with update(n), e.g. a tqdm bar
    first_index: int = 0  # labels[j] is sample number first_index + j of the whole set (its noise streams)
    halt: Any = None  # a sampling.adaptive.HaltRule: per-sample loop counts (`loops` is then the cap's schedule)
    trace: list | None = None  # with `halt`: receives the loops each sample used, (steps, b) per batch

    @classmethod
    def positional(cls, labels, loops, steps, guidance=1.0, seed=0, batch_size=None, progress=None,
                   precision="fp32") -> SampleRequest:
        """The request of the older positional sampler call."""
        return cls(labels, loops, steps, guidance, None, seed, batch_size, precision, progress)


class Sampler:
    """A trained model's sampler: sampler(request) or sampler(labels, loops, steps, guidance, seed,
    batch_size, progress, precision) -> uint8 samples (N, H, W, C)."""

    def __init__(self, run: Callable[[SampleRequest], torch.Tensor]):
        self._run = run

    def __call__(self, request: SampleRequest | torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if isinstance(request, SampleRequest):
            if args or kwargs:
                raise TypeError("pass either a SampleRequest or the positional sampling arguments, not both")
            return self._run(request)
        return self._run(SampleRequest.positional(request, *args, **kwargs))
