"""N-D patches: cut (B, C, *spatial) into non-overlapping patches -> (B, T, patch_dim) tokens, and back.

Tokens are in raster order over the patch grid (first axis slowest); a token's features are the patch's
values in raster order with the channel last. In 2-D this is `b c (gh p) (gw q) -> b (gh gw) (p q c)`, the
order of every image model trained so far, so their weights keep their meaning.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class Patchify:
    """Geometry of one input: `input_shape` = (C, *spatial), `patch` = one size per spatial axis."""

    def __init__(self, input_shape: Sequence[int], patch: Sequence[int]):
        input_shape, patch = tuple(input_shape), tuple(patch)
        if len(input_shape) < 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 1
                                       for s in input_shape):
            raise ValueError(f"input_shape must be (channels, *spatial) with positive integers, got {input_shape}")
        spatial = input_shape[1:]
        if len(patch) != len(spatial) or any(not isinstance(p, int) or isinstance(p, bool) or p < 1
                                             for p in patch):
            raise ValueError(f"patch must give one positive integer per spatial axis of {spatial}, got {patch}")
        if any(s % p for s, p in zip(spatial, patch)):
            raise ValueError(f"patch {patch} does not divide the input's spatial shape {spatial}: pick patch sizes "
                             f"that divide each axis")
        self.input_shape, self.patch = input_shape, patch
        self.channels = input_shape[0]
        self.grid = tuple(s // p for s, p in zip(spatial, patch))  # tokens along each spatial axis

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def patch_dim(self) -> int:
        return math.prod(self.patch) * self.channels

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, *spatial) -> (B, T, patch_dim)
        n = len(self.grid)
        split = [v for g, p in zip(self.grid, self.patch) for v in (g, p)]
        h = x.reshape(x.shape[0], self.channels, *split)  # (B, C, g0, p0, g1, p1, ...)
        order = [2 + 2 * i for i in range(n)] + [3 + 2 * i for i in range(n)] + [1]
        return h.permute(0, *order).reshape(x.shape[0], self.num_tokens, self.patch_dim)

    def unpatchify(self, h: torch.Tensor) -> torch.Tensor:
        # h: (B, T, patch_dim) -> (B, C, *spatial)
        n = len(self.grid)
        x = h.reshape(h.shape[0], *self.grid, *self.patch, self.channels)  # (B, g0, g1, ..., p0, p1, ..., C)
        order = [1 + 2 * n] + [v for i in range(n) for v in (1 + i, 1 + n + i)]
        return x.permute(0, *order).reshape(h.shape[0], *self.input_shape)
