"""Image grids saved as PNG (Pillow), for sample sheets and the any-time figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def make_grid(images: torch.Tensor | np.ndarray, rows: int, cols: int, pad: int = 2) -> np.ndarray:
    """uint8 (rows·cols, H, W, C) in row-major order -> uint8 (rows·(H+pad)+pad, cols·(W+pad)+pad, C)."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    if n != rows * cols:
        raise ValueError(f"grid of {rows}x{cols} needs {rows * cols} images, got {n}")
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = images[i]
    return out


def scaled_titled(array: np.ndarray, scale: int = 1, column_titles: list[str] | None = None,
                  title_height: int = 14) -> Image.Image:
    """uint8 (H, W, C) -> a PIL image upscaled by `scale` (nearest), with optional column headers above."""
    img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if column_titles:
        canvas = Image.new(img.mode, (img.width, img.height + title_height), 255 if img.mode == "L" else (255,) * 3)
        canvas.paste(img, (0, title_height))
        draw = ImageDraw.Draw(canvas)
        step = img.width / len(column_titles)
        for i, text in enumerate(column_titles):
            draw.text((int(i * step + 4), 1), text, fill=0 if img.mode == "L" else (0, 0, 0))
        img = canvas
    return img


def save_png(array: np.ndarray, path: str | Path, scale: int = 1,
             column_titles: list[str] | None = None, title_height: int = 14) -> Path:
    """Save uint8 (H, W, C) as PNG, upscaled by `scale` (nearest), with optional column headers."""
    img = scaled_titled(array, scale, column_titles, title_height)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def sheet_layout(n: int, num_classes: int, per_class: int | None) -> tuple[torch.Tensor, int, int]:
    """Which samples a sample sheet shows, row-major, and its (rows, cols): with `per_class` samples of each
    class in class order, a row per class (at most 16 columns); otherwise rows of 16 in sample order (a partial
    last row is left out)."""
    if per_class is not None and per_class * num_classes == n:
        cols = min(per_class, 16)
        idx = torch.arange(num_classes)[:, None] * per_class + torch.arange(cols)[None]
        return idx.flatten(), num_classes, cols
    cols = min(16, n)
    rows = n // cols
    return torch.arange(rows * cols), rows, cols


def sample_sheet(images: torch.Tensor, num_classes: int, per_class: int | None) -> np.ndarray:
    """The grid `elt sample --grid` writes (layout: `sheet_layout`).
    images: uint8 (N, H, W, C) -> uint8 grid (rows·(H+2)+2, cols·(W+2)+2, C)."""
    idx, rows, cols = sheet_layout(len(images), num_classes, per_class)
    return make_grid(images[idx], rows, cols)


def loop_sheet(columns: list[torch.Tensor], loop_counts: list[int], path: str | Path) -> Path:
    """The any-time figure: one column per loop count, each column uint8 (K, H, W, C) with a row per class;
    saved at scale 3 with an `L=…` title over every column."""
    cells = torch.stack(columns, 1).flatten(0, 1)  # (K·len(loops), H, W, C) row-major
    return save_png(make_grid(cells, len(columns[0]), len(loop_counts)), path, scale=3,
                    column_titles=[f"L={L}" for L in loop_counts])
