"""Pre-norm transformer block with adaLN-Zero conditioning (DiT style)."""
from __future__ import annotations

import torch
from torch import nn

from .attention import SelfAttention


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x: (B, T, D); shift, scale: (B, D)
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


ACTIVATIONS = {"gelu_tanh": "tanh", "gelu": "none"}  # name -> nn.GELU(approximate=...)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2. `act`: "gelu_tanh" (DiT's) or "gelu" (exact erf form: the same function to
    ~1e-3, and its bf16 forward+backward measured 2.4× faster on CPU than the tanh form)."""

    def __init__(self, dim: int, hidden: int, act: str = "gelu_tanh"):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"MLP activation must be one of {list(ACTIVATIONS)}, got {act!r}")
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=ACTIVATIONS[act])
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class FixedModulation(nn.Module):
    """What adaLN-Zero reduces to when the condition is a constant zero (MaskGIT's class-token conditioning):
    learned (shift, scale, gate) vectors shared by every sample, zero-initialised. The same function as
    `Sequential(SiLU, Linear)` at c = 0 without the Linear's weight matrix, which would never get a gradient
    (d·width parameters that only inflate the count)."""

    def __init__(self, width: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        # c: (B, D) (only its batch size is read) -> (B, width); a copy, not an expand() view: torch's
        # FlopCounterMode fails on a module output that is a no-grad view of a parameter
        return self.bias.unsqueeze(0).repeat(c.shape[0], 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before this module stored the unused Sequential(SiLU, Linear): take its bias
        if prefix + "1.bias" in state_dict and prefix + "bias" not in state_dict:
            state_dict[prefix + "bias"] = state_dict.pop(prefix + "1.bias")
            state_dict.pop(prefix + "1.weight", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def modulation_layer(dim: int, width: int, conditioned: bool = True) -> nn.Module:
    """adaLN's (B, D) condition -> (B, width) modulation, zero-initialised; `conditioned=False`: a
    `FixedModulation` for models whose blocks see no condition."""
    if not conditioned:
        return FixedModulation(width)
    ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, width))
    nn.init.zeros_(ada[1].weight)  # adaLN-Zero: the block starts as the identity
    nn.init.zeros_(ada[1].bias)
    return ada


class AdaLNBlock(nn.Module):
    """x + g1·Attn(mod(LN(x))) ; x + g2·MLP(mod(LN(x))), with (shift, scale, gate)×2 from the condition.

    The modulation is split out (`modulation(c)`) so a looped core computes it once per forward and
    reuses it in every loop: the condition does not change between loops. `conditioned=False`: the
    modulation is a learned constant (`FixedModulation`), for class-token conditioning.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False,
                 attn_impl: str = "auto", mlp_act: str = "gelu_tanh", conditioned: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads, qk_norm=qk_norm, impl=attn_impl)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), mlp_act)
        self.ada = modulation_layer(dim, 6 * dim, conditioned)

    def modulation(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # c: (B, D) -> six (B, D) tensors
        return self.ada(c).chunk(6, dim=-1)

    def forward(self, x: torch.Tensor, mod: tuple[torch.Tensor, ...]) -> torch.Tensor:
        # x: (B, T, D)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod
        x = torch.addcmul(x, gate1.unsqueeze(1), self.attn(modulate(self.norm1(x), shift1, scale1)))
        return torch.addcmul(x, gate2.unsqueeze(1), self.mlp(modulate(self.norm2(x), shift2, scale2)))
