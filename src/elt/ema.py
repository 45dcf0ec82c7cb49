"""Exponential moving average of a model's weights (kept in fp32)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.decay, self.warmup = decay, warmup
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """DiT-style constant decay, with the usual (1+s)/(10+s) warm-up so early weights fade fast."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = self.decay_at(step)
        ema_p = list(self.model.parameters())
        src_p = list(model.parameters())
        torch._foreach_lerp_(ema_p, src_p, 1.0 - d)
