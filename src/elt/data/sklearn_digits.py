"""Offline fallback: scikit-learn's 8x8 hand-written digits (1,797 images).

scikit-learn is optional (`pip install scikit-learn`); its data ship with the
package, so no network is needed. Values 0..16 become uint8 by
round(v * 255 / 16); the cache `digits.npz` holds `images` uint8 (N, 8, 8) and
`labels` int64 (N,) in scikit-learn's order, plus `source` and `license`.

Fixed split: within each class, in that order, the LAST 18 digits are the
test split and the rest the train split -> 1,617 train / 180 test.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .cache import load_npz, resolve_cache_dir, save_npz_atomic
from .dataset import ArrayImageDataset, DataError, check_split, tail_split_indices

DIGITS_FILE = "digits.npz"
DIGITS_TEST_PER_CLASS = 18
DIGITS_CLASSES = [str(k) for k in range(10)]
DIGITS_SOURCE = (
    "UCI ML hand-written digits (optical recognition), as bundled by scikit-learn "
    "(sklearn.datasets.load_digits)"
)
DIGITS_LICENSE = "CC BY 4.0 (UCI dataset); scikit-learn itself is BSD-3-Clause"
_REFETCH = "run `elt data digits` again"


def digits_to_uint8(values: np.ndarray) -> np.ndarray:
    """0..16 floats -> 0..255 uint8 via round(v * 255 / 16)."""
    return np.rint(np.asarray(values, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray, str]:
    try:
        import sklearn
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise DataError(
            "the `digits` dataset needs scikit-learn, which is not installed: "
            "pip install scikit-learn"
        ) from e
    bunch = sk_load_digits()
    images = np.asarray(bunch.images)  # (N, 8, 8) floats 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)  # (N,)
    return images, labels, str(getattr(sklearn, "__version__", "unknown"))


def fetch_digits(cache_dir: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
    """Build (once) and return the `digits.npz` cache path."""
    path = resolve_cache_dir(cache_dir) / DIGITS_FILE
    if path.exists() and not force:
        return path
    images, labels, version = _sklearn_digits()
    if images.ndim != 3 or images.shape[1:] != (8, 8) or labels.shape != images.shape[:1]:
        raise DataError(f"scikit-learn returned unexpected digits arrays {images.shape}, {labels.shape}")
    return save_npz_atomic(
        path,
        images=digits_to_uint8(images),
        labels=labels,
        source=np.array(f"{DIGITS_SOURCE}, scikit-learn {version}"),
        license=np.array(DIGITS_LICENSE),
    )


def load_digits_arrays(cache_dir: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All digits: images uint8 (N, 8, 8), labels int64 (N,). Builds the cache
    on first use (offline)."""
    path = fetch_digits(cache_dir)
    z = load_npz(path, ("images", "labels"), _REFETCH)
    images, labels = z["images"], z["labels"].astype(np.int64)
    if images.dtype != np.uint8 or images.shape[1:] != (8, 8) or labels.shape != images.shape[:1]:
        raise DataError(f"cache file {path} has unexpected arrays; delete it and {_REFETCH}")
    return images, labels


def load_digits(split: str = "train", cache_dir: str | os.PathLike[str] | None = None) -> ArrayImageDataset:
    """Digits split as an in-memory dataset of shape (1, 8, 8)."""
    check_split(split)
    images, labels = load_digits_arrays(cache_dir)
    idx = tail_split_indices(labels, DIGITS_TEST_PER_CLASS, split)
    return ArrayImageDataset(images[idx][:, None], labels[idx], DIGITS_CLASSES)  # (N, 1, 8, 8)
