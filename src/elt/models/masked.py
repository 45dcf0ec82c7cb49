"""ELT-MaskGIT: token + position embedding -> LoopedCore(N blocks × L loops) -> adaLN logits head.

With a `model.latent` section (ELIT's latent interface, `models.latent`) the core runs on latents instead:
embedding -> head blocks -> Read -> core on G·J latents -> Write -> tail blocks -> logits head, as in the
flow family; without it the model and its state dict are the plain ELT-MaskGIT's.

Class conditioning (`model.conditioning`): "adaln" (default, as in the flow family) lets the label embedding
modulate every block; "token" is MaskGIT's BERT-style class token, prepended to the sequence, with the blocks
then modulated by learned constants (`nn.block.FixedModulation`: LayerNorm affines and LayerScale-like gates,
no adaLN weight matrices, so the parameter count is MaskGIT's 12·d² per block), on the same `LoopedCore`.
The null label (index `num_classes`) is the unconditional input for classifier-free guidance either way.
Token index `codebook_size` is [MASK].
"""
from __future__ import annotations

from collections.abc import Sequence
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..budget import refuse_latents
from ..nn.embed import LabelEmbedder, sincos_nd
from ..nn.final import FinalLayer
from ..nn.looped import LoopedCore, check_core_settings, check_loops
from .latent import LatentConfig, LatentPath


@dataclass
class MaskedModelConfig:
    """Architecture of an ELT-MaskGIT. `codebook_size` and `grid` must match the tokenizer's."""

    image_size: int = 28  # of the images the tokenizer reads (checked against the data)
    channels: int = 1
    codebook_size: int = 256  # V: token vocabulary (the [MASK] token is index V)
    grid: int = 7  # tokens per side: T = grid² tokens per image
    frames: int = 0  # clips: frames per clip the tokenizer reads (inputs (C, frames, H, W)); 0 = images
    time_grid: int = 0  # clips: tokens along time (the tokenizer's frames / 2**time_downsample)
    dim: int = 256
    heads: int = 4
    blocks: int = 2
    mlp_ratio: float = 4.0
    num_classes: int = 10
    qk_norm: bool = False
    attn_impl: str = "auto"  # "auto" | "sdpa" | "math" (see elt.nn.attention)
    mlp_act: str = "gelu_tanh"  # "gelu_tanh" | "gelu"
    conditioning: str = "adaln"  # "adaln" (label modulates every block) | "token" (MaskGIT's class token)
    latent: LatentConfig | None = None  # ELIT's latent interface around the core (None: plain ELT-MaskGIT)

    def validate(self) -> None:
        for key in ("image_size", "channels", "codebook_size", "grid", "dim", "heads", "blocks", "num_classes"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        check_core_settings(self)
        if self.conditioning not in ("adaln", "token"):
            raise ValueError(f"model.conditioning must be 'adaln' or 'token', got {self.conditioning!r}")
        if bool(self.frames) != bool(self.time_grid) or self.frames < 0 or self.time_grid < 0:
            raise ValueError(f"a clip model needs both model.frames (frames per clip) and model.time_grid (tokens "
                             f"along time) >= 1, an image model neither; got frames={self.frames}, "
                             f"time_grid={self.time_grid}")
        axes = len(self.token_grid)
        if self.dim % 2 != 0 or self.dim < 2 * axes:
            raise ValueError(f"model.dim must be even and at least {2 * axes} ({axes}-D sin-cos positions), got "
                             f"{self.dim}")
        if self.latent is not None:
            if self.conditioning == "token":  # Read's windows tile the token grid: no room for a class token
                raise ValueError("model.conditioning: token does not combine with a model.latent section (the "
                                 "class token is no cell of the token grid the latent windows tile): use "
                                 "model.conditioning: adaln, or remove model.latent")
            self.latent.validate(self.token_grid, self.dim)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W), or (C, frames, H, W) for clips: what the tokenizer turns into this model's token grid."""
        time = (self.frames,) if self.frames else ()
        return (self.channels, *time, self.image_size, self.image_size)

    @property
    def token_grid(self) -> tuple[int, ...]:
        """Tokens along each axis of the tokenizer's code grid: (grid, grid), or (time_grid, grid, grid)."""
        time = (self.time_grid,) if self.frames else ()
        return (*time, self.grid, self.grid)

    @property
    def tokens(self) -> int:
        """T: tokens per sample (the grid, flattened in raster order)."""
        return math.prod(self.token_grid)

    @property
    def mask_id(self) -> int:
        return self.codebook_size


class MaskedTransformer(nn.Module):
    """Class-conditional ELT-MaskGIT. `forward(tokens, y, loops, exits, latents)` -> logits over the codebook.

    With a `latent` section the core runs on G·J latents between a spatial head and tail (`LatentPath`);
    without it the model and its state dict are the plain ELT-MaskGIT's."""

    def __init__(self, cfg: MaskedModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d = cfg.dim
        self.tok_embed = nn.Embedding(cfg.codebook_size + 1, d)  # + [MASK]
        self.pos = nn.Parameter(sincos_nd(d, cfg.token_grid)[None].clone())  # (1, T, D), learned
        self.y_embed = LabelEmbedder(cfg.num_classes, d)
        adaln = cfg.conditioning == "adaln"  # class token: blocks and head get constant modulations
        self.core = LoopedCore(d, cfg.heads, cfg.blocks, cfg.mlp_ratio, cfg.qk_norm, cfg.attn_impl, cfg.mlp_act,
                               conditioned=adaln)
        self.head = FinalLayer(d, cfg.codebook_size, conditioned=adaln)
        self.core.init_weights()
        nn.init.normal_(self.tok_embed.weight, std=0.02)
        nn.init.normal_(self.y_embed.table.weight, std=0.02)
        if cfg.latent is not None:  # registered only with the section (and last: the plain weights draw alike)
            self.latent = LatentPath(cfg.latent, cfg.token_grid, d, cfg.heads, cfg.mlp_ratio, cfg.qk_norm,
                                     cfg.attn_impl, cfg.mlp_act)

    @property
    def null_label(self) -> int:
        return self.y_embed.null_label

    @property
    def mask_id(self) -> int:
        return self.cfg.mask_id

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample: its token grid."""
        return self.cfg.token_grid

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Inputs of one forward call (tokens all [MASK], y) at `batch`, for FLOP counting and benchmarks."""
        return (torch.full((batch, self.cfg.tokens), self.mask_id, dtype=torch.long),
                torch.zeros(batch, dtype=torch.long))

    def forward(self, tokens: torch.Tensor, y: torch.Tensor, loops: int,
                exits: Sequence[int] | None = None, latents: int | None = None
                ) -> torch.Tensor | list[torch.Tensor]:
        """tokens: (B, T) int64 in [0, V] (V = [MASK]), y: (B,) labels (null_label = unconditional).

        Returns logits (B, T, V) after `loops` loops, or, if `exits` is given, one logits tensor per exit
        (sorted ascending), all from one forward pass through the core. `latents`: latents per group J
        (None: J_max) for a model with a latent interface; must stay None without one.
        """
        cfg = self.cfg
        if tokens.dim() != 2 or tokens.shape[1] != cfg.tokens:
            grid = "x".join(map(str, cfg.token_grid))
            raise ValueError(f"expected token ids of shape (B, {cfg.tokens}) (a {grid} grid, flattened), "
                             f"got {tuple(tokens.shape)}")
        path = getattr(self, "latent", None)
        if path is None:
            refuse_latents(latents)
        else:
            latents = path.check_latents(latents)
        want = check_loops(loops, exits)
        h, c = self.embed(tokens, y)
        if path is None:
            states = self.core(h, c, loops, want)
        else:  # adaLN conditioning only (validated)
            states = path.around(self.core, h, c, loops, want, latents)  # each (B, T, D)
        outs = [self.readout(s, c) for s in states]  # each (B, T, V)
        return outs if exits is not None else outs[0]

    def embed(self, tokens: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The core's input: token states h (B, T, D), with the class token first under token conditioning
        (B, 1 + T, D), and the condition c (B, D) (zeros under token conditioning)."""
        h = self.tok_embed(tokens) + self.pos  # (B, T, D)
        c = self.y_embed(y)  # (B, D)
        if self.cfg.conditioning == "token":  # class token first; blocks and head see a constant condition
            h = torch.cat([c[:, None], h], 1)  # (B, 1 + T, D)
            c = torch.zeros_like(c)
        return h, c

    def readout(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """A core state -> logits (B, T, V) (the class token dropped under token conditioning)."""
        if self.cfg.conditioning == "token":
            h = h[:, 1:]  # (B, T, D)
        return self.head(h, c)
