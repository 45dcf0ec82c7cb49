"""Pixels as codes: THE uint8 <-> [-1, 1] conversion of elt (every other module calls these).

The arithmetic is fixed: `x / 127.5 - 1` in and `round((clamp(x, -1, 1) + 1) * 127.5)` out. Another
formula of the same meaning (e.g. `(x - 127.5) / 127.5`) rounds differently and changes trained weights.
"""
from __future__ import annotations

import torch

from .base import channels_first


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any layout) -> float32 in [-1, 1], same layout and device."""
    if images.dtype != torch.uint8:
        raise ValueError(f"to_unit maps uint8 pixels to [-1, 1], got {images.dtype}: pass the raw uint8 images")
    return images.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float (B, C, *S) in [-1, 1] (clamped) -> uint8 (B, *S, C) on the CPU: channels-last, the `.npz` layout."""
    if x.ndim < 3:
        raise ValueError(f"to_uint8 expects (B, C, *S) with at least one spatial axis, got {tuple(x.shape)}")
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(1, -1).cpu()


class PixelCodec:
    """The identity codec on pixels: codes are the images in [-1, 1], channels-first (B, C, *S).

    `media_shape` (C, *S) is only used to check inputs; None accepts any shape."""

    discrete = False

    def __init__(self, media_shape: tuple[int, ...] | None = None):
        self._shape = None if media_shape is None else tuple(int(v) for v in media_shape)

    @property
    def media_shape(self) -> tuple[int, ...] | None:
        return self._shape

    @property
    def code_shape(self) -> tuple[int, ...] | None:
        return self._shape

    to_unit = staticmethod(to_unit)
    to_uint8 = staticmethod(to_uint8)

    def _check(self, x: torch.Tensor, what: str) -> None:
        if self._shape is not None and tuple(x.shape[1:]) != self._shape:
            raise ValueError(f"{what} must have shape (B, {', '.join(map(str, self._shape))}), got {tuple(x.shape)}")

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """uint8 (B, *S, C) -> float (B, C, *S) in [-1, 1]."""
        x = to_unit(channels_first(media))
        self._check(x, "channels-first pixels")
        return x

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Float (B, C, *S) in [-1, 1] -> the same values as float32 (pixels need no decoder)."""
        if not codes.is_floating_point():
            raise ValueError(f"pixel codes are floats in [-1, 1], got {codes.dtype}: map uint8 pixels with encode")
        self._check(codes, "pixel codes")
        return codes.float()


PIXELS = PixelCodec()  # the shape-agnostic pixel codec
