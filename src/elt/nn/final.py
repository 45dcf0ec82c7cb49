"""The output layer shared by both families: adaLN (shift, scale) from the condition, then a linear map."""
from __future__ import annotations

import torch
from torch import nn

from .block import modulate


class FinalLayer(nn.Module):
    """adaLN (shift, scale) + linear to the outputs (patch pixels, or token logits); zero-initialised, so the
    model starts at output 0 (uniform logits for the masked family)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)
        for lin in (self.ada[1], self.linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D), c: (B, D) -> (B, T, out_dim)
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
