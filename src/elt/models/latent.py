"""The optional `model.latent:` section (ELIT's latent interface around the looped core) and the spatial
head / Read / Write / tail it adds to a model.

With the section the looped core runs on latents: tokens -> head (unique blocks, run once) -> Read -> core
(N blocks × L loops on G·J latents) -> Write -> tail (unique blocks, run once per exit) -> output layer.
Without it (the default) a model is exactly the plain ELT model: no extra parameters, no extra keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..nn.block import AdaLNBlock
from ..nn.latent import LatentInterface, window_counts


@dataclass
class LatentConfig:
    """ELIT's latent interface. `window`: tokens per window side (an int: every spatial axis, one frame per
    window for clips; or one per token-grid axis); `latents_per_group`: J_max (None: the tokens of a window,
    ELIT's K = N); `head_blocks` / `tail_blocks`: unique spatial blocks before Read and after Write;
    `mlp_ratio`: width of the Read/Write MLPs (ELIT: 1.0)."""

    window: int | tuple[int, ...] = 4
    latents_per_group: int | None = None
    head_blocks: int = 1
    tail_blocks: int = 1
    mlp_ratio: float = 1.0

    def window_for(self, grid: tuple[int, ...]) -> tuple[int, ...]:
        """The window per axis of a token grid: an int covers the last two (spatial) axes, 1 on the others."""
        if isinstance(self.window, int):
            return (1,) * (len(grid) - 2) + (self.window,) * min(2, len(grid))
        return tuple(self.window)

    def j_max(self, grid: tuple[int, ...]) -> int:
        """Latents per group at the full budget: `latents_per_group`, or the tokens of a window."""
        return math.prod(self.window_for(grid)) if self.latents_per_group is None else self.latents_per_group

    def validate(self, grid: tuple[int, ...], dim: int) -> None:
        """ValueError naming the key at fault."""
        window = self.window_for(grid)
        if any(w < 1 for w in window):
            raise ValueError(f"model.latent.window must be >= 1 per axis, got {self.window}")
        if len(window) != len(grid):
            raise ValueError(f"model.latent.window {list(window)} needs one size per token-grid axis "
                             f"({'x'.join(map(str, grid))}), or a single int for the spatial axes")
        try:
            window_counts(grid, window)
        except ValueError:
            fits = [w for w in range(1, min(grid[-2:]) + 1) if all(n % w == 0 for n in grid[-2:])]
            raise ValueError(f"model.latent.window={self.window} does not tile the "
                             f"{'x'.join(map(str, grid))} token grid: pick a window that divides every side "
                             f"({', '.join(map(str, fits))})") from None
        if self.latents_per_group is not None and self.latents_per_group < 1:
            raise ValueError(f"model.latent.latents_per_group must be >= 1 (or unset: the tokens of a window), "
                             f"got {self.latents_per_group}")
        for key in ("head_blocks", "tail_blocks"):
            if getattr(self, key) < 0:
                raise ValueError(f"model.latent.{key} must be >= 0, got {getattr(self, key)}")
        if not 0 < self.mlp_ratio < float("inf"):
            raise ValueError(f"model.latent.mlp_ratio must be a finite number > 0, got {self.mlp_ratio}")
        if dim % 2 != 0 or dim < 2 * len(grid):
            raise ValueError(f"model.dim={dim} must be even and at least {2 * len(grid)} for the latents' "
                             f"{len(grid)}-D group positions")


class LatentPath(nn.Module):
    """Head blocks, the latent interface and tail blocks of a model with a `model.latent` section.

    `enter(h, c, J)`: tokens (B, N, D) -> (kept tokens (B, N, D), latents (B, G·J, D)) for the core;
    `leave(h, l, c)`: the kept tokens and one core state (B, G·J, D) -> tokens (B, N, D) for the output layer."""

    def __init__(self, cfg: LatentConfig, grid: tuple[int, ...], dim: int, heads: int, mlp_ratio: float,
                 qk_norm: bool, attn_impl: str, mlp_act: str):
        super().__init__()
        def blocks(n: int) -> nn.ModuleList:
            return nn.ModuleList(AdaLNBlock(dim, heads, mlp_ratio, qk_norm, attn_impl, mlp_act) for _ in range(n))
        self.head = blocks(cfg.head_blocks)
        self.interface = LatentInterface(dim, heads, grid, cfg.window_for(grid), cfg.j_max(grid), cfg.mlp_ratio,
                                         True, mlp_act)
        self.tail = blocks(cfg.tail_blocks)
        for blk in (*self.head, *self.tail):  # DiT's initialisation, as the core's blocks (adaLN stays zero)
            for lin in (blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)

    def check_latents(self, latents: int | None) -> int:
        return self.interface.check_latents(latents)

    def enter(self, h: torch.Tensor, c: torch.Tensor, latents: int) -> tuple[torch.Tensor, torch.Tensor]:
        # h: (B, N, D), c: (B, D) -> (B, N, D) head output, (B, G·J, D) latents
        for blk in self.head:
            h = blk(h, blk.modulation(c))
        return h, self.interface.read(h, c, latents)

    def tail_mods(self, c: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """The tail blocks' modulations, computed once and shared by every exit."""
        return [blk.modulation(c) for blk in self.tail]

    def around(self, core, h: torch.Tensor, c: torch.Tensor, loops: int, want, latents: int) -> list[torch.Tensor]:
        """The looped `core` run on latents: head, Read, core (to the exits `want`), then Write and tail per
        exit. h: (B, N, D) embedded tokens, c: (B, D) -> one (B, N, D) token state per exit."""
        h, lat = self.enter(h, c, latents)  # (B, N, D) head output, (B, G·J, D)
        mods = self.tail_mods(c)
        return [self.leave(h, s, mods) for s in core(lat, c, loops, want)]

    def leave(self, h: torch.Tensor, lat: torch.Tensor, mods: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        # h: (B, N, D) head output, lat: (B, G·J, D) one core state -> (B, N, D)
        s = self.interface.write(h, lat)
        for blk, mod in zip(self.tail, mods):
            s = blk(s, mod)
        return s
