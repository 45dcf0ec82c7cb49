"""ELT-DiT: patchify -> LoopedCore(N blocks × L loops) -> final adaLN layer -> unpatchify.

Inputs are images (B, C, H, W) or, with `frames` ≥ 1, clips (B, C, frames, H, W); `Patchify` cuts either
into tokens, so the core never sees the geometry.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..budget import refuse_latents
from ..nn.embed import LabelEmbedder, TimestepEmbedder, sincos_nd
from ..nn.final import FinalLayer
from ..nn.looped import LoopedCore, check_core_settings, check_loops
from ..nn.patch import Patchify
from .latent import LatentConfig, LatentPath


@dataclass
class FlowModelConfig:
    """Architecture of an ELT-DiT. `blocks` unique layers; the loop count is a call argument.

    Geometry: square `image_size`² inputs with `channels`, cut into `patch`² patches. `frames` ≥ 1 adds a
    time axis of that many frames (inputs (C, frames, H, W)), cut `frame_patch` frames per token; 0 (the
    default) means images. Plain integers, so every existing config reads unchanged; `input_shape` and
    `patch_size` give the N-D tuples. A one-frame clip is the image model: same weights, same outputs.
    """

    image_size: int = 28
    channels: int = 1
    patch: int = 4
    frames: int = 0  # 0: images (C, H, W); T >= 1: clips (C, T, H, W)
    frame_patch: int = 1  # frames per token along the time axis (clips only)
    dim: int = 256
    heads: int = 4
    blocks: int = 2
    mlp_ratio: float = 4.0
    num_classes: int = 10
    pos_embed: str = "sincos"  # "sincos" (fixed) or "learned"
    qk_norm: bool = False
    attn_impl: str = "auto"  # "auto" | "sdpa" | "math" (see elt.nn.attention)
    mlp_act: str = "gelu_tanh"  # "gelu_tanh" (DiT) | "gelu" (exact; faster in bf16 on CPU, see elt.nn.block)
    latent: LatentConfig | None = None  # ELIT's latent interface around the core (None: plain ELT)

    def validate(self) -> None:
        for key in ("image_size", "channels", "patch", "frame_patch", "dim", "heads", "blocks", "num_classes"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.frames < 0:
            raise ValueError(f"model.frames must be 0 (images) or the number of frames of a clip, got {self.frames}")
        if self.image_size % self.patch != 0:
            raise ValueError(f"model.patch={self.patch} does not divide model.image_size={self.image_size}: "
                             f"pick a patch size that divides the image side (e.g. 2, 4 or 7 for 28)")
        if self.frames == 0 and self.frame_patch != 1:
            raise ValueError(f"model.frame_patch={self.frame_patch} needs a time axis: set model.frames (the clip "
                             f"length) or leave frame_patch at 1 for images")
        if self.frames and self.frames % self.frame_patch != 0:
            raise ValueError(f"model.frame_patch={self.frame_patch} does not divide model.frames={self.frames}: "
                             f"pick a frame patch that divides the clip length")
        check_core_settings(self)
        axes = len(position_grid(self.token_grid))
        if self.dim % 2 != 0 or self.dim < 2 * axes:
            raise ValueError(f"model.dim={self.dim} must be even and at least {2 * axes} for the {axes}-D sin-cos "
                             f"positions of a {'x'.join(map(str, self.token_grid))} token grid")
        if self.pos_embed not in ("sincos", "learned"):
            raise ValueError(f"model.pos_embed must be 'sincos' or 'learned', got {self.pos_embed!r}")
        if self.latent is not None:
            self.latent.validate(self.token_grid, self.dim)

    @property
    def grid(self) -> int:
        """Tokens per image side."""
        return self.image_size // self.patch

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) for images, (C, T, H, W) for clips."""
        time = (self.frames,) if self.frames else ()
        return (self.channels, *time, self.image_size, self.image_size)

    @property
    def patch_size(self) -> tuple[int, ...]:
        """Patch extent per spatial axis: (p, p), or (frame_patch, p, p) for clips."""
        time = (self.frame_patch,) if self.frames else ()
        return (*time, self.patch, self.patch)

    @property
    def patches(self) -> Patchify:
        """The input's patch geometry (token grid, token count, values per token)."""
        return Patchify(self.input_shape, self.patch_size)

    @property
    def token_grid(self) -> tuple[int, ...]:
        """Tokens along each spatial axis."""
        return self.patches.grid

    @property
    def num_tokens(self) -> int:
        return self.patches.num_tokens

    @property
    def patch_dim(self) -> int:
        """Values per token: prod(patch_size)·C."""
        return self.patches.patch_dim


def position_grid(grid: tuple[int, ...]) -> tuple[int, ...]:
    """The grid positions are embedded on: leading axes of one token are dropped (down to 2 axes), so a
    one-token-deep clip gets exactly the image positions."""
    grid = tuple(grid)
    while len(grid) > 2 and grid[0] == 1:
        grid = grid[1:]
    return grid


class FlowTransformer(nn.Module):
    """Class-conditional ELT-DiT. `forward(x, t, y, loops, exits, latents)`; only the core is looped.

    With a `latent` section the core runs on G·J latents between a spatial head and tail (`LatentPath`);
    without it the model and its state dict are the plain ELT-DiT's."""

    def __init__(self, cfg: FlowModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d = cfg.dim
        self.patches = cfg.patches
        self.patch_embed = nn.Linear(self.patches.patch_dim, d)
        pos = sincos_nd(d, position_grid(self.patches.grid))[None]  # (1, T, D)
        if cfg.pos_embed == "learned":
            self.pos = nn.Parameter(pos.clone())
        else:
            self.register_buffer("pos", pos, persistent=False)
        self.t_embed = TimestepEmbedder(d)
        self.y_embed = LabelEmbedder(cfg.num_classes, d)
        self.core = LoopedCore(d, cfg.heads, cfg.blocks, cfg.mlp_ratio, cfg.qk_norm, cfg.attn_impl,
                               cfg.mlp_act)
        self.final = FinalLayer(d, self.patches.patch_dim)
        if cfg.latent is not None:  # registered only with the section: plain models keep their state dict
            self.latent = LatentPath(cfg.latent, self.patches.grid, d, cfg.heads, cfg.mlp_ratio, cfg.qk_norm,
                                     cfg.attn_impl, cfg.mlp_act)
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

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W) or (C, T, H, W)."""
        return self.cfg.input_shape

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Inputs of one forward call (x, t, y) at `batch`, for FLOP counting and benchmarks."""
        return (torch.zeros(batch, *self.sample_shape), torch.full((batch,), 0.5),
                torch.zeros(batch, dtype=torch.long))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, loops: int,
                exits: Sequence[int] | None = None, latents: int | None = None
                ) -> torch.Tensor | list[torch.Tensor]:
        """x: (B, *sample_shape), t: (B,) in [0, 1], y: (B,) labels (null_label = unconditional).

        Returns the prediction (B, *sample_shape) after `loops` loops, or, if `exits` is given, a list with
        one prediction per exit (sorted ascending), all from one forward pass through the core. `latents`:
        latents per group J (None: J_max) for a model with a latent interface; must stay None without one.
        """
        if x.shape[1:] != self.sample_shape:
            kind = "images" if len(self.sample_shape) == 3 else "clips"
            raise ValueError(f"expected {kind} of shape (B, {', '.join(map(str, self.sample_shape))}), "
                             f"got {tuple(x.shape)}")
        path = getattr(self, "latent", None)
        if path is None:
            refuse_latents(latents)
        else:
            latents = path.check_latents(latents)
        want = check_loops(loops, exits)
        h, c = self.embed(x, t, y)
        if path is None:
            states = self.core(h, c, loops, want)  # each (B, T, D)
        else:
            states = path.around(self.core, h, c, loops, want, latents)  # each (B, T, D)
        outs = [self.readout(s, c) for s in states]  # each (B, *sample_shape)
        return outs if exits is not None else outs[0]

    def embed(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The core's input: patch tokens h (B, T, D) and the condition c (B, D) of time and label."""
        h = self.patch_embed(self.patches.patchify(x)) + self.pos  # (B, T, D)
        return h, self.t_embed(t) + self.y_embed(y)

    def readout(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """A core state (B, T, D) -> the prediction (B, *sample_shape): final adaLN layer, unpatchify."""
        return self.patches.unpatchify(self.final(h, c))
