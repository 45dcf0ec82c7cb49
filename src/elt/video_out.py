"""Clip grids written as one animated GIF (Pillow): every frame of the GIF is an image grid of the clips'
frame t, so a row per class and a column per loop count (or per sample) play side by side."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from .atomic import atomic_path
from .grid import make_grid, scaled_titled, sheet_layout


def clip_grid_frames(cells: np.ndarray | torch.Tensor, pad: int = 2) -> np.ndarray:
    """uint8 clips (R, C, T, H, W, ch) -> uint8 frames (T, R·(H+pad)+pad, C·(W+pad)+pad, ch) of the grid."""
    cells = np.asarray(cells)
    if cells.dtype != np.uint8 or cells.ndim != 6:
        raise ValueError(f"a clip grid needs uint8 clips (rows, cols, T, H, W, C), got {cells.dtype} {cells.shape}")
    rows, cols, frames = cells.shape[:3]
    flat = cells.reshape(rows * cols, *cells.shape[2:])  # (R·C, T, H, W, ch), row-major
    return np.stack([make_grid(flat[:, t], rows, cols, pad) for t in range(frames)])


def write_gif_grid(cells: np.ndarray | torch.Tensor, path: str | Path, fps: float = 4.0, scale: int = 2,
                   column_titles: list[str] | None = None, title_height: int = 14) -> Path:
    """Write clips (R, C, T, H, W, ch) as one looping GIF grid (nearest upscaling by `scale`, optional column
    titles), atomically; grey clips stay grey."""
    frames = clip_grid_frames(cells)  # (T, GH, GW, ch)
    images = [scaled_titled(f, scale, column_titles, title_height) for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        images[0].save(fh, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                       loop=0)
    return path


def loop_gif(columns: list[torch.Tensor], loop_counts: list[int], path: str | Path) -> Path:
    """The any-time figure for clips: one column per loop count, each column uint8 (K, T, H, W, C) with a row per
    class, as one GIF with an `L=…` title over every column."""
    cells = torch.stack(columns, 1).numpy()  # (K, len(loops), T, H, W, C)
    return write_gif_grid(cells, path, scale=3, column_titles=[f"L={L}" for L in loop_counts])


def clip_sheet(clips: torch.Tensor, num_classes: int, per_class: int | None) -> np.ndarray:
    """`elt sample`'s sheet of clips (N, T, H, W, C) -> cells (rows, cols, T, H, W, C) (layout: `sheet_layout`)."""
    idx, rows, cols = sheet_layout(len(clips), num_classes, per_class)
    return np.asarray(clips[idx]).reshape(rows, cols, *clips.shape[1:])


def write_mp4(cells: np.ndarray | torch.Tensor, path: str | Path, fps: float = 4.0, scale: int = 2) -> Path:
    """Write clips (R, C, T, H, W, ch) as one H.264 MP4 grid (PyAV, yuv420p, sides padded to even), atomically."""
    from .data.video_folder import import_av

    av = import_av()
    frames = clip_grid_frames(cells)  # (T, GH, GW, ch)
    frames = frames.repeat(scale, 1).repeat(scale, 2)
    if frames.shape[-1] == 1:
        frames = frames.repeat(3, -1)
    t, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=round(fps))
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.options = {"crf": "18"}
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    return path
