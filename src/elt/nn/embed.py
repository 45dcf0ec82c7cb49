"""Embeddings: timestep (sinusoidal + MLP), class labels with a null class, N-D sin-cos positions."""
from __future__ import annotations

import math

import torch
from torch import nn


class TimestepEmbedder(nn.Module):
    """Scalar t in [0, 1] -> (B, D): sinusoidal features of 1000·t, then a 2-layer MLP."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # t: (B,) float
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (1000.0 * t.float())[:, None] * freqs[None]  # (B, half)
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class LabelEmbedder(nn.Module):
    """Class table with one extra row, index `num_classes`, for the null (unconditional) label."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        # y: (B,) int64 in [0, num_classes]
        return self.table(y)


def sincos_nd(dim: int, grid: tuple[int, ...]) -> torch.Tensor:
    """Fixed N-D sin-cos position embedding, (prod(grid), dim), rows in raster order (first axis slowest).

    Each axis gets dim / len(grid) channels (`axis_pairs`), [sin, cos] of its coordinate at geometric
    frequencies, last axis first: in 2-D this is MAE's / DiT's [x.sin, x.cos, y.sin, y.cos] layout, bit for bit."""
    grid = tuple(int(g) for g in grid)
    if not grid or any(g < 1 for g in grid):
        raise ValueError(f"sincos position embedding needs a grid of positive sizes, got {grid}")
    coords = torch.meshgrid(*(torch.arange(g, dtype=torch.float64) for g in grid), indexing="ij")
    return sincos_at(dim, torch.stack([c.reshape(-1) for c in coords], dim=1))  # (T, len(grid)) coordinates


def sincos_at(dim: int, coords: torch.Tensor) -> torch.Tensor:
    """Sin-cos embedding (P, dim) of real coordinates (P, k): `axis_pairs` channel pairs per axis, [sin, cos] at
    geometric frequencies, last axis first (`sincos_nd`'s layout, which calls this on integer grid coordinates)."""
    parts = []
    for axis, n_freq in zip(reversed(range(coords.shape[1])), axis_pairs(dim, coords.shape[1])):
        omega = 1.0 / 10000 ** (torch.arange(n_freq, dtype=torch.float64) / n_freq)
        out = coords[:, axis:axis + 1].double() * omega[None]  # (P, n_freq)
        parts += [out.sin(), out.cos()]
    return torch.cat(parts, dim=1).float()


def axis_pairs(dim: int, k: int) -> list[int]:
    """[sin, cos] pairs per axis of k-D sin-cos positions, in the order they are written (last axis first):
    dim / (2k) each when that divides, else the dim / 2 pairs spread as evenly as possible (dim 1024 on a
    (t, h, w) grid: 171, 171, 170), so any even width works, e.g. MAGVIT's 1024 on 3-D token grids."""
    if dim % 2 != 0 or dim < 2 * k:
        raise ValueError(f"sin-cos positions on a {k}-D grid need an even dim of at least {2 * k}, got {dim}")
    base, extra = divmod(dim // 2, k)
    return [base + (1 if i < extra else 0) for i in range(k)]


def sincos_2d(dim: int, h: int, w: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding, (h·w, dim), rows in raster order (= sincos_nd(dim, (h, w)))."""
    if dim % 4 != 0:
        raise ValueError(f"sincos position embedding needs dim divisible by 4, got {dim}")
    return sincos_nd(dim, (h, w))
