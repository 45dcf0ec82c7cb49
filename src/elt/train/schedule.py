"""The data order and the learning-rate schedule, shared by the generator and the tokenizer trainers.

Both are pure functions of (seed, step): every rank computes the same global plan and takes its slice,
and a resumed run continues with exactly the batches and learning rates it would have had.
"""
from __future__ import annotations

import functools
import math

import torch

from ..rng import epoch_seed, generator


@functools.lru_cache(maxsize=2)
def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Data order of one epoch -> (n,) int64, a function of (seed, epoch); cached so a step does not redraw it."""
    return torch.randperm(n, generator=generator(epoch_seed(seed, epoch)))


def batch_indices(step: int, batch: int, n: int, seed: int) -> torch.Tensor:
    """Global batch `step` of an endless stream of per-epoch permutations of range(n) -> (batch,) int64."""
    pos = torch.arange(step * batch, (step + 1) * batch)
    epochs, offs = pos // n, pos % n
    out = torch.empty(batch, dtype=torch.long)
    for e in epochs.unique().tolist():
        perm = _epoch_permutation(n, seed, e)
        sel = epochs == e
        out[sel] = perm[offs[sel]]
    return out


def warmup_cosine(step: int, lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float,
                  cosine: bool = True) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay to lr·min_lr_ratio at `total_steps`
    (or a constant lr when `cosine` is False)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if not cosine:
        return lr
    frac = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def learning_rate(step: int, cfg) -> float:
    """The generator's learning rate at `step` for a Config (train.lr, warmup_steps, lr_schedule, ...)."""
    t = cfg.train
    return warmup_cosine(step, t.lr, t.warmup_steps, t.steps, t.min_lr_ratio, cosine=t.lr_schedule == "cosine")
