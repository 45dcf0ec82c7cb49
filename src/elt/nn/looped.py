"""LoopedCore: N unique blocks applied L times, with the hidden state returned at any requested exits."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..budget import Budget
from .block import AdaLNBlock


def check_core_settings(cfg) -> None:
    """The settings every model config passes to LoopedCore: dim, heads, mlp_ratio, attn_impl, mlp_act
    (ValueError)."""
    for key in ("dim", "heads", "blocks"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"model.{key} must be >= 1, got {getattr(cfg, key)}")
    if not cfg.mlp_ratio > 0 or cfg.mlp_ratio == float("inf"):
        raise ValueError(f"model.mlp_ratio must be a finite number > 0 (the MLP width is dim·mlp_ratio), "
                         f"got {cfg.mlp_ratio}")
    if cfg.dim % cfg.heads != 0:
        raise ValueError(f"model.dim={cfg.dim} is not divisible by model.heads={cfg.heads}")
    if cfg.attn_impl not in ("auto", "sdpa", "math"):
        raise ValueError(f"model.attn_impl must be 'auto', 'sdpa' or 'math', got {cfg.attn_impl!r}")
    if cfg.mlp_act not in ("gelu_tanh", "gelu"):
        raise ValueError(f"model.mlp_act must be 'gelu_tanh' or 'gelu', got {cfg.mlp_act!r}")


def check_loops(loops: int, exits: Sequence[int] | None = None) -> tuple[int, ...]:
    """Validate a loop count and exit list; return the sorted unique exits (default: just `loops`)."""
    Budget(loops)  # the one loop-count check (BudgetError, a ValueError)
    if exits is None:
        return (loops,)
    if any(isinstance(e, bool) or int(e) != e for e in exits):
        raise ValueError(f"exits must be integers, got {tuple(exits)!r}")
    out = tuple(sorted({int(e) for e in exits}))
    if not out or out[0] < 1 or out[-1] > loops:
        raise ValueError(f"exits must lie in 1..loops={loops}, got {tuple(exits)!r}")
    return out


class LoopedCore(nn.Module):
    """g_Θ = f_N ∘ … ∘ f_1, applied `loops` times. Parameters depend on N only, never on L."""

    def __init__(self, dim: int, heads: int, blocks: int, mlp_ratio: float = 4.0, qk_norm: bool = False,
                 attn_impl: str = "auto", mlp_act: str = "gelu_tanh", conditioned: bool = True):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.blocks = nn.ModuleList(AdaLNBlock(dim, heads, mlp_ratio, qk_norm, attn_impl, mlp_act, conditioned)
                                    for _ in range(blocks))
        self.block_calls = 0  # counts block applications (for tests and FLOP accounting)
        self.checkpoint_blocks = False  # train.checkpoint_activations: recompute each block call in backward

    def modulations(self, c: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """c: (B, D) -> every block's six (B, D) adaLN modulations: computed once, reused by every loop."""
        return [blk.modulation(c) for blk in self.blocks]

    def loop_once(self, x: torch.Tensor, mods: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        """One loop: the N blocks applied to x (B, T, D) with their modulations -> (B, T, D)."""
        for blk, mod in zip(self.blocks, mods):
            if self.checkpoint_blocks and torch.is_grad_enabled():  # keeps x, drops the block's activations
                x = checkpoint(blk, x, mod, use_reentrant=False)
            else:
                x = blk(x, mod)
        if not torch.compiler.is_compiling():  # a changing int attribute would force recompiles
            self.block_calls += len(self.blocks)
        return x

    def forward(self, x: torch.Tensor, c: torch.Tensor, loops: int,
                exits: Sequence[int] | None = None) -> list[torch.Tensor]:
        """x: (B, T, D) tokens, c: (B, D) condition -> hidden states (B, T, D) after each exit loop."""
        exits = check_loops(loops, exits)
        mods = self.modulations(c)  # once per forward, shared by all loops
        states = []
        for loop in range(1, exits[-1] + 1):
            x = self.loop_once(x, mods)
            if loop in exits:
                states.append(x)
        return states

    def init_weights(self) -> None:
        """DiT's initialisation of the block linears: Xavier-uniform weights, zero biases (adaLN stays zero)."""
        for blk in self.blocks:
            for lin in (blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
