"""Convolutional VQ autoencoder: images (B, C, H, W) in [-1, 1] <-> token grids (B, h, w), h = H / 2**downsample;
clips (B, C, T, H, W) <-> (B, t, h, w) with 3-D convolutions, t = T / 2**time_downsample.

Shape facts and input checks come from the shared `VQCodec` base.

Encoder: 3x3 stem at base_channels; per stage `res_blocks` residual blocks then a stride-2 3x3 conv that
doubles the width; `res_blocks` more at the lowest resolution; GroupNorm + SiLU + 1x1 conv to code_dim.
The decoder mirrors it with nearest-neighbour upsampling + 3x3 conv and ends in tanh. For clips every conv is
3x3x3; the first `time_downsample` stages stride (2, 2, 2), the others (1, 2, 2) (MAGVIT's ×4 time / ×8 space
at full size), and the decoder's last `time_downsample` stages upsample time back.
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


def _conv(dims: int):
    return nn.Conv3d if dims == 3 else nn.Conv2d


def _stride(dims: int, halve_time: bool) -> int | tuple[int, int, int]:
    """Stride 2 in 2-D; (2, 2, 2) or (1, 2, 2) in 3-D."""
    return 2 if dims == 2 else (2 if halve_time else 1, 2, 2)


class ResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))); the last conv starts at zero, so the block starts as identity."""

    def __init__(self, ch: int, dims: int = 2):
        super().__init__()
        conv = _conv(dims)
        self.body = nn.Sequential(_norm(ch), nn.SiLU(), conv(ch, ch, 3, padding=1),
                                  _norm(ch), nn.SiLU(), conv(ch, ch, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    def __init__(self, in_ch: int, base: int, downsample: int, res_blocks: int, code_dim: int, dims: int = 2,
                 time_downsample: int = 0):
        super().__init__()
        conv = _conv(dims)
        layers: list[nn.Module] = [conv(in_ch, base, 3, padding=1)]
        ch = base
        for stage in range(downsample):
            layers += [ResBlock(ch, dims) for _ in range(res_blocks)]
            layers.append(conv(ch, 2 * ch, 3, stride=_stride(dims, stage < time_downsample), padding=1))
            ch *= 2
        layers += [ResBlock(ch, dims) for _ in range(res_blocks)]
        layers += [_norm(ch), nn.SiLU(), conv(ch, code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, H, W) -> (B, code_dim, h, w); clips (B, C, T, H, W) -> (B, code_dim, t, h, w)


class Decoder(nn.Module):
    def __init__(self, out_ch: int, base: int, downsample: int, res_blocks: int, code_dim: int, dims: int = 2,
                 time_downsample: int = 0):
        super().__init__()
        conv = _conv(dims)
        ch = base * 2 ** downsample
        layers: list[nn.Module] = [conv(code_dim, ch, 3, padding=1)]
        layers += [ResBlock(ch, dims) for _ in range(res_blocks)]
        for stage in range(downsample):  # mirrors the encoder: its first stages (which halve time) come last
            layers += [nn.Upsample(scale_factor=_stride(dims, downsample - 1 - stage < time_downsample),
                                   mode="nearest"), conv(ch, ch // 2, 3, padding=1)]
            ch //= 2
            layers += [ResBlock(ch, dims) for _ in range(res_blocks)]
        layers += [_norm(ch), nn.SiLU(), conv(ch, out_ch, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.net(q)  # (B, code_dim, *grid) -> (B, C, *S) in [-1, 1]


class VQAutoencoder(VQCodec):
    """Image tokenizer. `encode_unit` / `decode` map between images in [-1, 1] and int64 token grids (`encode`
    takes uint8 media, channels-last); `forward` is the training pass (recon, tokens, commitment loss, stats)."""

    def __init__(self, cfg: TokenizerConfig, image_shape: tuple[int, ...]):
        super().__init__()
        cfg.validate()
        shape = tuple(int(v) for v in image_shape)
        if len(shape) not in (3, 4):
            raise ValueError(f"the tokenizer reads images (C, H, W) or clips (C, T, H, W), got {shape}")
        c, *time, h, w = shape
        f = 2 ** cfg.downsample
        if h % f or w % f:
            raise ValueError(f"images of {h}x{w} cannot be downsampled {cfg.downsample} times (by {f}): "
                             f"choose tokenizer.downsample so that 2**downsample divides both sides, or resize "
                             f"the data (data.image_size)")
        ft = 2 ** cfg.time_downsample
        if not time and cfg.time_downsample:
            raise ValueError(f"tokenizer.time_downsample={cfg.time_downsample} needs clips; the data gives images "
                             f"{shape}: set it to 0")
        if time and time[0] % ft:
            raise ValueError(f"clips of {time[0]} frames cannot be halved in time {cfg.time_downsample} times: "
                             f"choose tokenizer.time_downsample so that 2**time_downsample divides the frames")
        self.cfg = cfg
        grid = (*(t // ft for t in time), h // f, w // f)
        self._set_shapes(cfg.codebook_size, grid, shape)
        dims = len(shape) - 1
        self.encoder = Encoder(c, cfg.base_channels, cfg.downsample, cfg.res_blocks, cfg.code_dim, dims,
                               cfg.time_downsample)
        self.quantizer = VectorQuantizer(cfg.codebook_size, cfg.code_dim, cfg.ema_decay, cfg.commitment,
                                         cfg.dead_threshold)
        self.decoder = Decoder(c, cfg.base_channels, cfg.downsample, cfg.res_blocks, cfg.code_dim, dims,
                               cfg.time_downsample)

    @property
    def device(self) -> torch.device:
        return self.quantizer.codebook.device

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Checked images (B, C, *S) in [-1, 1] -> tokens (B, *grid) int64."""
        _, idx, _, _ = self.quantizer(self.encoder(x), update=False)
        return idx

    def _decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Checked tokens (B, *grid) int64 -> images (B, C, *S) in [-1, 1]."""
        return self.decoder(self.quantizer.lookup(tokens))

    def forward(self, x: torch.Tensor):
        """Training pass: (recon (B, C, *S), tokens (B, *grid), commitment loss (), stats dict)."""
        q, idx, commit, stats = self.quantizer(self.encoder(self.check_images(x)))
        return self.decoder(q), idx, commit, stats
