"""Convolutional VQ autoencoder: images (B, C, H, W) in [-1, 1] <-> token grids (B, h, w), h = H / 2**downsample.

Encoder: 3x3 stem at base_channels; per stage `res_blocks` residual blocks then a stride-2 3x3 conv that
doubles the width; `res_blocks` more at the lowest resolution; GroupNorm + SiLU + 1x1 conv to code_dim.
The decoder mirrors it with nearest-neighbour upsampling + 3x3 conv and ends in tanh.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import TokenizerConfig
from .quantizer import VectorQuantizer


def _norm(ch: int) -> nn.GroupNorm:
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if ch % g == 0 and g <= ch)
    return nn.GroupNorm(groups, ch, eps=1e-6)


class ResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))); the last conv starts at zero, so the block starts as identity."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                  _norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    def __init__(self, in_ch: int, base: int, downsample: int, res_blocks: int, code_dim: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, base, 3, padding=1)]
        ch = base
        for _ in range(downsample):
            layers += [ResBlock(ch) for _ in range(res_blocks)]
            layers.append(nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1))
            ch *= 2
        layers += [ResBlock(ch) for _ in range(res_blocks)]
        layers += [_norm(ch), nn.SiLU(), nn.Conv2d(ch, code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, H, W) -> (B, code_dim, h, w)


class Decoder(nn.Module):
    def __init__(self, out_ch: int, base: int, downsample: int, res_blocks: int, code_dim: int):
        super().__init__()
        ch = base * 2 ** downsample
        layers: list[nn.Module] = [nn.Conv2d(code_dim, ch, 3, padding=1)]
        layers += [ResBlock(ch) for _ in range(res_blocks)]
        for _ in range(downsample):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch // 2, 3, padding=1)]
            ch //= 2
            layers += [ResBlock(ch) for _ in range(res_blocks)]
        layers += [_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.net(q)  # (B, code_dim, h, w) -> (B, C, H, W) in [-1, 1]


class VQAutoencoder(nn.Module):
    """Image tokenizer. `encode` / `decode` map between images in [-1, 1] and int64 token grids;
    `forward` is the training pass (recon, tokens, commitment loss, stats)."""

    def __init__(self, cfg: TokenizerConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        cfg.validate()
        c, h, w = (int(v) for v in image_shape)
        f = 2 ** cfg.downsample
        if h % f or w % f:
            raise ValueError(f"images of {h}x{w} cannot be downsampled {cfg.downsample} times (by {f}): "
                             f"choose tokenizer.downsample so that 2**downsample divides both sides, or resize "
                             f"the data (data.image_size)")
        self.cfg = cfg
        self._image_shape = (c, h, w)
        self._grid = (h // f, w // f)
        self.encoder = Encoder(c, cfg.base_channels, cfg.downsample, cfg.res_blocks, cfg.code_dim)
        self.quantizer = VectorQuantizer(cfg.codebook_size, cfg.code_dim, cfg.ema_decay, cfg.commitment,
                                         cfg.dead_threshold)
        self.decoder = Decoder(c, cfg.base_channels, cfg.downsample, cfg.res_blocks, cfg.code_dim)

    # ---- shape facts used by the generator --------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def token_grid(self) -> tuple[int, int]:
        return self._grid

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._image_shape

    @property
    def device(self) -> torch.device:
        return self.quantizer.codebook.device

    # ---- checks -------------------------------------------------------------------------------------------
    def _check_images(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self._image_shape:
            raise ValueError(f"the tokenizer expects images of shape (B, {', '.join(map(str, self._image_shape))}), "
                             f"got {tuple(x.shape)}: resize the data to the tokenizer's image shape")
        if not x.is_floating_point():
            raise ValueError(f"the tokenizer expects float images in [-1, 1], got {x.dtype}: map uint8 images with "
                             f"x / 127.5 - 1")
        return x.to(self.device)

    def check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise ValueError(f"tokens must be an integer tensor, got {tokens.dtype}")
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != self._grid:
            raise ValueError(f"tokens must have shape (B, {self._grid[0]}, {self._grid[1]}) for this tokenizer, "
                             f"got {tuple(tokens.shape)}: the generator's grid must match the tokenizer's")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.codebook_size):
            raise ValueError(f"token values must lie in 0..{self.codebook_size - 1}, got "
                             f"{int(tokens.min())}..{int(tokens.max())} (a [MASK] id left in the grid?)")
        return tokens.to(self.device, torch.long)

    # ---- API ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> tokens (B, h, w) int64; never updates the codebook."""
        x = self._check_images(x)
        _, idx, _, _ = self.quantizer(self.encoder(x), update=False)
        return idx

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, h, w) int64 in [0, codebook_size) -> images (B, C, H, W) in [-1, 1]."""
        return self.decoder(self.quantizer.lookup(self.check_tokens(tokens)))

    def forward(self, x: torch.Tensor):
        """Training pass: (recon (B, C, H, W), tokens (B, h, w), commitment loss (), stats dict)."""
        q, idx, commit, stats = self.quantizer(self.encoder(self._check_images(x)))
        return self.decoder(q), idx, commit, stats
