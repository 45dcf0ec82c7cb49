"""ELT-DiT: patchify -> LoopedCore(N blocks × L loops) -> final adaLN layer -> unpatchify."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from ..nn.final import FinalLayer
from ..nn.embed import LabelEmbedder, TimestepEmbedder, sincos_2d
from ..nn.looped import LoopedCore, check_core_settings, check_loops


@dataclass
class FlowModelConfig:
    """Architecture of an ELT-DiT. `blocks` unique layers; the loop count is a call argument."""

    image_size: int = 28
    channels: int = 1
    patch: int = 4
    dim: int = 256
    heads: int = 4
    blocks: int = 2
    mlp_ratio: float = 4.0
    num_classes: int = 10
    pos_embed: str = "sincos"  # "sincos" (fixed) or "learned"
    qk_norm: bool = False
    attn_impl: str = "auto"  # "auto" | "sdpa" | "math" (see elt.nn.attention)
    mlp_act: str = "gelu_tanh"  # "gelu_tanh" (DiT) | "gelu" (exact; faster in bf16 on CPU, see elt.nn.block)

    def validate(self) -> None:
        for key in ("image_size", "channels", "patch", "dim", "heads", "blocks", "num_classes"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.image_size % self.patch != 0:
            raise ValueError(f"model.patch={self.patch} does not divide model.image_size={self.image_size}: "
                             f"pick a patch size that divides the image side (e.g. 2, 4 or 7 for 28)")
        check_core_settings(self)
        if self.pos_embed not in ("sincos", "learned"):
            raise ValueError(f"model.pos_embed must be 'sincos' or 'learned', got {self.pos_embed!r}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch


class FlowTransformer(nn.Module):
    """Class-conditional ELT-DiT. `forward(x, t, y, loops, exits)`; only the core is looped."""

    def __init__(self, cfg: FlowModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        p, c, d = cfg.patch, cfg.channels, cfg.dim
        self.patch_embed = nn.Linear(p * p * c, d)
        pos = sincos_2d(d, cfg.grid, cfg.grid)[None]  # (1, T, D)
        if cfg.pos_embed == "learned":
            self.pos = nn.Parameter(pos.clone())
        else:
            self.register_buffer("pos", pos, persistent=False)
        self.t_embed = TimestepEmbedder(d)
        self.y_embed = LabelEmbedder(cfg.num_classes, d)
        self.core = LoopedCore(d, cfg.heads, cfg.blocks, cfg.mlp_ratio, cfg.qk_norm, cfg.attn_impl,
                               cfg.mlp_act)
        self.final = FinalLayer(d, p * p * c)
        self._init_weights()

    def _init_weights(self) -> None:
        self.core.init_weights()
        nn.init.xavier_uniform_(self.patch_embed.weight)
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.y_embed.table.weight, std=0.02)
        for lin in (self.t_embed.mlp[0], self.t_embed.mlp[2]):
            nn.init.normal_(lin.weight, std=0.02)

    @property
    def null_label(self) -> int:
        return self.y_embed.null_label

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Inputs of one forward call (x, t, y) at `batch`, for FLOP counting and benchmarks."""
        c = self.cfg
        return (torch.zeros(batch, c.channels, c.image_size, c.image_size), torch.full((batch,), 0.5),
                torch.zeros(batch, dtype=torch.long))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, loops: int,
                exits: Sequence[int] | None = None) -> torch.Tensor | list[torch.Tensor]:
        """x: (B, C, H, W), t: (B,) in [0, 1], y: (B,) labels (null_label = unconditional).

        Returns the prediction (B, C, H, W) after `loops` loops, or, if `exits` is given, a list with one
        prediction per exit (sorted ascending), all from one forward pass through the core.
        """
        cfg = self.cfg
        if x.shape[1:] != (cfg.channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"expected images of shape (B, {cfg.channels}, {cfg.image_size}, {cfg.image_size}), "
                             f"got {tuple(x.shape)}")
        want = check_loops(loops, exits)
        h = rearrange(x, "b c (gh p) (gw q) -> b (gh gw) (p q c)", p=cfg.patch, q=cfg.patch)
        h = self.patch_embed(h) + self.pos  # (B, T, D)
        c = self.t_embed(t) + self.y_embed(y)  # (B, D)
        states = self.core(h, c, loops, want)
        outs = [self._unpatchify(self.final(s, c)) for s in states]
        return outs if exits is not None else outs[0]

    def _unpatchify(self, h: torch.Tensor) -> torch.Tensor:
        # h: (B, T, p·p·C) -> (B, C, H, W)
        g, p = self.cfg.grid, self.cfg.patch
        return rearrange(h, "b (gh gw) (p q c) -> b c (gh p) (gw q)", gh=g, gw=g, p=p, q=p)
