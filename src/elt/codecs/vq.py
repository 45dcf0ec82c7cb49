"""The shared base of the VQ tokenizers: images <-> integer token grids, with one set of shape facts and checks.

Subclasses (`tokenizers.VQAutoencoder`, `tokenizers.ScriptedTokenizer`) call `_set_shapes` in their
constructor and implement `_encode` (checked float images -> tokens), `_decode` (checked int64 tokens ->
images) and the `device` property.
"""
from __future__ import annotations

import torch
from torch import nn

from .pixel import PIXELS


class VQCodec(nn.Module):
    """Images (B, C, *S) in [-1, 1] <-> token grids (B, *grid) int64 in [0, codebook_size).

    `encode` takes uint8 media (B, *S, C) (the codec interface); `encode_unit` takes images already in
    [-1, 1], channels-first; `decode` returns float images in [-1, 1], channels-first."""

    discrete = True

    def _set_shapes(self, codebook_size: int, token_grid: tuple[int, ...], image_shape: tuple[int, ...]) -> None:
        self._codebook_size = int(codebook_size)
        self._grid = tuple(int(v) for v in token_grid)
        self._image_shape = tuple(int(v) for v in image_shape)

    # ---- shape facts used by the generator --------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    @property
    def token_grid(self) -> tuple[int, ...]:
        return self._grid

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self._image_shape

    @property
    def code_shape(self) -> tuple[int, ...]:
        return self._grid

    @property
    def media_shape(self) -> tuple[int, ...]:
        return self._image_shape

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    # ---- checks -------------------------------------------------------------------------------------------
    def check_images(self, x: torch.Tensor) -> torch.Tensor:
        """Float images (B, *image_shape) in [-1, 1] -> the same on the tokenizer's device; else ValueError."""
        if x.ndim != 1 + len(self._image_shape) or tuple(x.shape[1:]) != self._image_shape:
            raise ValueError(f"the tokenizer expects images of shape (B, {', '.join(map(str, self._image_shape))}), "
                             f"got {tuple(x.shape)}: resize the data to the tokenizer's image shape")
        if not x.is_floating_point():
            raise ValueError(f"the tokenizer expects float images in [-1, 1], got {x.dtype}: map uint8 images with "
                             f"x / 127.5 - 1 (elt.codecs.to_unit), or pass channels-last uint8 media to encode")
        return x.to(self.device)

    def check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Integer tokens (B, *token_grid) in [0, codebook_size) -> int64 on the tokenizer's device; else ValueError."""
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise ValueError(f"tokens must be an integer tensor, got {tokens.dtype}")
        if tokens.ndim != 1 + len(self._grid) or tuple(tokens.shape[1:]) != self._grid:
            raise ValueError(f"tokens must have shape (B, {', '.join(map(str, self._grid))}) for this tokenizer, "
                             f"got {tuple(tokens.shape)}: the generator's grid must match the tokenizer's")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self._codebook_size):
            raise ValueError(f"token values must lie in 0..{self._codebook_size - 1}, got "
                             f"{int(tokens.min())}..{int(tokens.max())} (a [MASK] id left in the grid?)")
        return tokens.to(self.device, torch.long)

    # ---- API ----------------------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _decode(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """uint8 media (B, *S, C) -> tokens (B, *token_grid) int64."""
        if media.is_floating_point():
            raise ValueError("encode takes uint8 media (B, *S, C); for float images in [-1, 1], channels-first, "
                             "call encode_unit")
        return self.encode_unit(PIXELS.encode(media))

    @torch.no_grad()
    def encode_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, *S) in [-1, 1] -> tokens (B, *token_grid) int64; never updates a codebook."""
        return self._encode(self.check_images(x))

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, *token_grid) in [0, codebook_size) -> float images (B, C, *S) in [-1, 1]."""
        return self._decode(self.check_tokens(tokens)).float()
