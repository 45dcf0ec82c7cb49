"""Real reference images and their features, cached on disk per data set content and feature extractor.

A cache entry is `<cache>/features/<extractor id>-<sha1 of the uint8 images>.npy`: a different split,
resize, extractor or weights file gets a different key, so a stale entry is never reused.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

from ..atomic import save_npy_atomic
from ..data import DataError, load_dataset
from ..data.cache import resolve_cache_dir
from ..hashing import images_sha1

__all__ = ["cached_features", "images_sha1", "real_images", "reference_and_floor"]


def real_images(ref: str, split: str, image_size: int, channels: int) -> torch.Tensor:
    """All images of `ref`'s split as uint8 (N, C, H, W), brought to the given size and channels."""
    ds = load_dataset(ref, split, image_size=image_size, channels=channels)
    return ds.get_batch(torch.arange(len(ds)))[0]


def cached_features(extractor_id: str, images: torch.Tensor, embed: Callable[[torch.Tensor], np.ndarray],
                    cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """embed(images) -> (N, D) float32, read from / written to the feature cache."""
    path = resolve_cache_dir(cache_dir) / "features" / f"{extractor_id}-{images_sha1(images)[:16]}.npy"
    if path.is_file():
        try:
            feats = np.load(path, allow_pickle=False)
            if feats.ndim == 2 and len(feats) == len(images):
                return feats
        except (OSError, ValueError):
            pass  # unreadable: recompute and overwrite below
    feats = np.ascontiguousarray(embed(images), dtype=np.float32)
    save_npy_atomic(path, feats)
    return feats


def reference_and_floor(ref: str, image_size: int, channels: int, seed: int = 0
                        ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(reference images, held-out real images for the floor, where the floor comes from).

    Reference = the train split; floor images = the test split in a fixed permutation, or, for data without
    a test split, a disjoint half of the train split (the reference is then the other half).
    """
    train = real_images(ref, "train", image_size, channels)
    g = torch.Generator().manual_seed(seed)
    try:
        test = real_images(ref, "test", image_size, channels)
        return train, test[torch.randperm(len(test), generator=g)], "test split"
    except DataError:
        perm = torch.randperm(len(train), generator=g)
        half = len(train) // 2
        return train[perm[half:]], train[perm[:half]], "disjoint half of the train split"
