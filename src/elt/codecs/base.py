"""The codec interface: media (uint8 pixels, channels-last) <-> codes a generator is trained on.

A codec's codes are what a model sees: pixels mapped to [-1, 1] (`PixelCodec`), VQ token grids
(`VQCodec`), or (next) continuous VAE latents. Layouts:

    encode(media uint8 (B, *S, C))  -> codes (B, *code_shape)
    decode(codes (B, *code_shape))  -> float (B, C, *S) in [-1, 1]

`media_shape` is (C, *S), the channels-first shape of one decoded item.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Codec(Protocol):
    discrete: bool  # True: integer codes (tokens); False: float codes (pixels, latents)

    @property
    def code_shape(self) -> tuple[int, ...]: ...

    @property
    def media_shape(self) -> tuple[int, ...]: ...

    def encode(self, media: torch.Tensor) -> torch.Tensor: ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...


def channels_first(media: torch.Tensor) -> torch.Tensor:
    """uint8 media (B, *S, C) -> (B, C, *S) (a view); rejects other dtypes and fewer than one spatial axis."""
    if media.dtype != torch.uint8:
        raise ValueError(f"media must be uint8 (B, *S, C) in 0..255, got {media.dtype}: pass the raw pixels")
    if media.ndim < 3:
        raise ValueError(f"media must have shape (B, *S, C) with at least one spatial axis, got {tuple(media.shape)}")
    return media.movedim(-1, 1)
