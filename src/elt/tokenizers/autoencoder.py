"""Convolutional VQ autoencoder: images (B, C, H, W) in [-1, 1] <-> token grids (B, h, w), h = H / 2**downsample.

Shape facts and input checks come from the shared `VQCodec` base.

Encoder: 3x3 stem at base_channels; per stage `res_blocks` residual blocks then a stride-2 3x3 conv that
doubles the width; `res_blocks` more at the lowest resolution; GroupNorm + SiLU + 1x1 conv to code_dim.
The decoder mirrors it with nearest-neighbour upsampling + 3x3 conv and ends in tanh.
"""
from __future__ import annotations

import torch
from torch import nn

from ..codecs.vq import VQCodec
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


class VQAutoencoder(VQCodec):
    """Image tokenizer. `encode_unit` / `decode` map between images in [-1, 1] and int64 token grids (`encode`
    takes uint8 media, channels-last); `forward` is the training pass (recon, tokens, commitment loss, stats)."""

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
        self._set_shapes(cfg.codebook_size, (h // f, w // f), (c, h, w))
        self.encoder = Encoder(c, cfg.base_channels, cfg.downsample, cfg.res_blocks, cfg.code_dim)
        self.quantizer = VectorQuantizer(cfg.codebook_size, cfg.code_dim, cfg.ema_decay, cfg.commitment,
                                         cfg.dead_threshold)
        self.decoder = Decoder(c, cfg.base_channels, cfg.downsample, cfg.res_blocks, cfg.code_dim)

    @property
    def device(self) -> torch.device:
        return self.quantizer.codebook.device

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Checked images (B, C, H, W) in [-1, 1] -> tokens (B, h, w) int64."""
        _, idx, _, _ = self.quantizer(self.encoder(x), update=False)
        return idx

    def _decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Checked tokens (B, h, w) int64 -> images (B, C, H, W) in [-1, 1]."""
        return self.decoder(self.quantizer.lookup(tokens))

    def forward(self, x: torch.Tensor):
        """Training pass: (recon (B, C, H, W), tokens (B, h, w), commitment loss (), stats dict)."""
        q, idx, commit, stats = self.quantizer(self.encoder(self.check_images(x)))
        return self.decoder(q), idx, commit, stats
