"""The output layer shared by both families: adaLN (shift, scale) from the condition, then a linear map."""
from __future__ import annotations

import torch
from torch import nn

from .block import modulate, modulation_layer


class FinalLayer(nn.Module):
    """adaLN (shift, scale) + linear to the outputs (patch pixels, or token logits); zero-initialised, so the
    model starts at output 0 (uniform logits for the masked family). `conditioned=False`: (shift, scale) are
    learned constants."""

    def __init__(self, dim: int, out_dim: int, conditioned: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = modulation_layer(dim, 2 * dim, conditioned)
        self.linear = nn.Linear(dim, out_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D), c: (B, D) -> (B, T, out_dim)
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
