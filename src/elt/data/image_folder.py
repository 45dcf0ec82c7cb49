"""ImageNet-layout folder: root/<class_name>/*.png|jpg|jpeg|bmp|webp.

Classes are the sub-folder names sorted alphabetically (label = position);
hidden folders (".name") are skipped; images inside a class folder are found
recursively and sorted by path. Images are read lazily in `get_batch`:
converted to "L" (channels=1) or "RGB" (channels=3), centre-cropped to a
square and resized to image_size with Pillow BICUBIC (ADM-style preprocessing).
Every file's header is checked once when the folder is indexed, so a corrupt file is named at start-up,
not when it is first drawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .dataset import DataError, ImageDataset, as_index

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def center_crop_resize(img: Image.Image, image_size: int) -> Image.Image:
    """Centre square crop (side = shorter edge), then BICUBIC resize."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    if s != image_size:
        img = img.resize((image_size, image_size), resample=Image.BICUBIC)
    return img


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def _unreadable(files: list[Path]) -> list[tuple[Path, str]]:
    """Files whose image header Pillow cannot parse (checked once when a folder is indexed: opening reads
    only the header, so a 60,000-image folder takes seconds)."""
    bad = []
    for path in files:
        try:
            with Image.open(path) as img:
                if img.size[0] < 1 or img.size[1] < 1:
                    bad.append((path, "empty image"))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            bad.append((path, e.__class__.__name__))
    return bad


class ImageFolderDataset(ImageDataset):
    """Lazy image-folder dataset; only the file list is built at construction."""

    def __init__(self, root: str | os.PathLike[str], image_size: int, channels: int = 3) -> None:
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if not isinstance(image_size, int) or image_size < 1:
            raise DataError(f"image_size must be a positive integer, got {image_size!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist (or is not a folder)")
        class_dirs = sorted(
            (d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")),
            key=lambda d: d.name,
        )
        if not class_dirs:
            raise DataError(
                f"image folder {self.root} has no class sub-folders; expected "
                f"root/<class_name>/<image>{'|'.join(IMAGE_EXTENSIONS)}"
            )
        files: list[Path] = []
        labels: list[int] = []
        for k, d in enumerate(class_dirs):
            imgs = _list_images(d)
            if not imgs:
                raise DataError(
                    f"class folder {d} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                    "add some or remove the folder"
                )
            files += imgs
            labels += [k] * len(imgs)
        bad = _unreadable(files)
        if bad:
            listed = "; ".join(f"{p} ({why})" for p, why in bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3
                                                                          else "")
            raise DataError(f"image folder {self.root} holds {len(bad)} unreadable image(s): {listed}. Remove or "
                            f"replace them")
        self.files = files
        self.labels = torch.tensor(labels, dtype=torch.long)  # (N,)
        self.class_names = [d.name for d in class_dirs]
        self.num_classes = len(class_dirs)
        self.channels = channels
        self.image_size = image_size
        self.image_shape = (channels, image_size, image_size)

    def __len__(self) -> int:
        return len(self.files)

    def load_image(self, i: int) -> torch.Tensor:
        """One image as uint8 (C, H, W)."""
        path = self.files[i]
        try:
            with Image.open(path) as img:
                img = img.convert("L" if self.channels == 1 else "RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"cannot read image {path}: {e}") from e
        arr = np.asarray(center_crop_resize(img, self.image_size))  # (H, W) or (H, W, 3)
        t = torch.from_numpy(arr.copy())
        return t[None] if t.ndim == 2 else t.permute(2, 0, 1).contiguous()

    def get_batch(
        self, indices: torch.Tensor | Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = as_index(indices, len(self))
        if idx.numel() == 0:
            return torch.empty((0, *self.image_shape), dtype=torch.uint8), self.labels[idx]
        images = torch.stack([self.load_image(int(i)) for i in idx])  # (B, C, H, W) uint8
        return images, self.labels[idx]
