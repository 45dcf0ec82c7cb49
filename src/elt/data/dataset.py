"""Common dataset API: errors, the in-memory dataset and shared array helpers.

Every image dataset yields uint8 images (B, C, H, W) in 0..255 and int64 labels (B,); `model_inputs` maps
a batch to what a model trains on (pixels in [-1, 1] through the pixel codec; code folders override it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..codecs.pixel import to_unit

SPLITS = ("train", "test")


from ..errors import DataError  # noqa: E402  (defined with the project's other errors)


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    return split


def as_index(indices: torch.Tensor | Sequence[int] | np.ndarray, n: int) -> torch.Tensor:
    """Indices -> int64 CPU tensor (B,), checked against dataset length `n`."""
    idx = torch.as_tensor(indices, dtype=torch.long, device="cpu").reshape(-1)
    if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise IndexError(f"index out of range for dataset of length {n}")
    return idx


class ImageDataset:
    """Base class: a labelled set of uint8 images addressed by index."""

    num_classes: int
    class_names: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W)
    labels: torch.Tensor  # (N,) int64, every label (cheap: known without reading images)

    def __len__(self) -> int:
        raise NotImplementedError

    def get_batch(
        self, indices: torch.Tensor | Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return images uint8 (B, C, H, W) and labels int64 (B,)."""
        raise NotImplementedError

    def model_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """A batch from get_batch -> model inputs: uint8 pixels (B, C, H, W) -> float (B, C, H, W) in [-1, 1]."""
        return to_unit(images)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, classes={self.num_classes}, "
            f"image_shape={self.image_shape})"
        )


class ArrayImageDataset(ImageDataset):
    """Images held in memory; `get_batch` is plain tensor indexing."""

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,  # (N, C, H, W) uint8
        labels: torch.Tensor | np.ndarray,  # (N,) integer
        class_names: Sequence[str],
    ) -> None:
        images = torch.as_tensor(images)
        labels = torch.as_tensor(labels).to(torch.long)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise DataError(
                f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
            raise DataError(f"labels must lie in 0..{len(class_names) - 1}")
        self.images = images.contiguous()
        self.labels = labels.contiguous()
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        c, h, w = images.shape[1:]
        self.image_shape = (int(c), int(h), int(w))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def get_batch(
        self, indices: torch.Tensor | Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = as_index(indices, len(self))
        return self.images[idx], self.labels[idx]  # (B, C, H, W) uint8, (B,) int64


def tail_split_indices(labels: np.ndarray, n_test_per_class: int, split: str) -> np.ndarray:
    """Indices of `split`: the last `n_test_per_class` items of each class (in
    array order) are test, the rest train. Returns sorted int64 indices."""
    check_split(split)
    labels = np.asarray(labels)
    is_test = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size <= n_test_per_class:
            raise DataError(
                f"class {int(c)} has only {idx.size} items, cannot hold out "
                f"{n_test_per_class} for test; the cached file looks wrong, delete it and fetch again"
            )
        is_test[idx[-n_test_per_class:]] = True
    return np.flatnonzero(is_test if split == "test" else ~is_test).astype(np.int64)


def adapt_images(
    images: torch.Tensor,  # (N, C, H, W) uint8
    image_size: int | None = None,
    channels: int | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Resize (bilinear, antialiased) to image_size x image_size and convert
    channels (grey -> RGB by repetition, RGB -> grey by ITU-R 601 luma).
    Returns uint8 (N, channels, image_size, image_size)."""
    n, c, h, w = images.shape
    if channels is not None and channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if channels is not None and c not in (1, 3):
        raise DataError(f"cannot convert {c}-channel images to {channels} channels")
    if image_size is not None and image_size < 1:
        raise DataError(f"image_size must be a positive integer, got {image_size}")
    out_c = c if channels is None else channels
    size = (h, w) if image_size is None else (image_size, image_size)
    if out_c == c and size == (h, w):
        return images
    out = torch.empty((n, out_c, *size), dtype=torch.uint8)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for s in range(0, n, chunk):
        x = images[s : s + chunk].float()  # (b, c, h, w)
        if c == 3 and out_c == 1:
            x = (x * luma).sum(1, keepdim=True)  # (b, 1, h, w)
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        if c == 1 and out_c == 3:
            x = x.expand(-1, 3, -1, -1)  # (b, 3, H, W)
        out[s : s + chunk] = x.round().clamp(0, 255).to(torch.uint8)
    return out
