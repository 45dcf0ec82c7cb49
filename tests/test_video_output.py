"""Clip outputs: the animated GIF grid (Pillow) and the MP4 grid (PyAV), read back; `elt sample --grid/--mp4`
on a clip run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from elt.data.dataset import ArrayImageDataset
from elt.video_out import clip_grid_frames, clip_sheet, write_gif_grid, write_mp4


def _cells(rows: int = 2, cols: int = 3, frames: int = 4, size: int = 8) -> np.ndarray:
    """(rows, cols, T, H, W, 1): cell (r, c) at frame t has value 20·(r·cols + c) + 5·t, so each cell and frame
    is recognisable."""
    r, c, t = np.meshgrid(np.arange(rows), np.arange(cols), np.arange(frames), indexing="ij")
    values = (20 * (r * cols + c) + 5 * t).astype(np.uint8)
    return np.broadcast_to(values[..., None, None, None], (rows, cols, frames, size, size, 1)).copy()


def test_grid_frames_place_every_cell_row_major_with_padding():
    frames = clip_grid_frames(_cells(), pad=2)  # (T, 2·10+2, 3·10+2, 1)
    assert frames.shape == (4, 22, 32, 1)
    assert frames[3, 2 + 10 + 3, 2 + 2 * 10 + 3, 0] == 20 * 5 + 15  # row 1, col 2, frame 3
    assert frames[0, 0, 0, 0] == 255  # the padding


def test_the_gif_round_trips_frames_and_cells(tmp_path):
    path = write_gif_grid(_cells(), tmp_path / "g.gif", fps=5, scale=1)
    gif = Image.open(path)
    assert gif.n_frames == 4 and gif.info["duration"] == 200 and gif.mode in ("L", "P")
    gif.seek(2)
    assert abs(int(np.asarray(gif.convert("L"))[2 + 10 + 3, 2 + 10 + 3]) - (20 * 4 + 10)) <= 1  # row 1, col 1


def test_the_mp4_round_trips_frames_and_cells(tmp_path):
    av = pytest.importorskip("av")
    path = write_mp4(_cells(size=16), tmp_path / "g.mp4", fps=4, scale=1)
    with av.open(str(path)) as f:
        frames = [fr.to_ndarray(format="gray") for fr in f.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (2 * 18 + 2, 3 * 18 + 2)  # even sides already
    assert abs(int(frames[3][2 + 18 + 8, 2 + 2 * 18 + 8]) - (20 * 5 + 15)) <= 6  # lossy, but close


def test_clip_sheet_is_a_row_per_class():
    clips = torch.arange(6).reshape(6, 1, 1, 1, 1).expand(6, 2, 4, 4, 1).to(torch.uint8)  # sample i has value i
    cells = clip_sheet(clips, num_classes=3, per_class=2)
    assert cells.shape == (3, 2, 2, 4, 4, 1) and cells[:, :, 0, 0, 0, 0].tolist() == [[0, 1], [2, 3], [4, 5]]


def test_elt_sample_writes_the_gif_and_mp4_of_a_clip_run(tiny_cfg_dict, tmp_path, monkeypatch):
    pytest.importorskip("av")
    from elt.cli import main

    images = np.zeros((20, 28, 28), np.uint8)
    images[:, 8:20, 8:20] = 255
    monkeypatch.setattr("elt.data.load_mnist", lambda split, cache_dir=None, download=True: ArrayImageDataset(
        images[:, None], np.arange(20) % 10, [str(d) for d in range(10)]))
    d = tiny_cfg_dict()
    d["data"] = {"name": "moving-digits"}
    d["model"] |= {"image_size": 32, "channels": 1, "patch": 8, "frames": 8, "frame_patch": 4, "num_classes": 10,
                   "dim": 36, "heads": 2}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d))
    assert main(["train", str(tmp_path / "c.yaml"), "train.steps=1", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    assert main(["sample", str(tmp_path / "run"), "--per-class", "1", "--steps", "1", "--out",
                 str(tmp_path / "s.npz"), "--grid", str(tmp_path / "s.gif"), "--mp4", str(tmp_path / "s.mp4")]) == 0
    gif = Image.open(tmp_path / "s.gif")
    assert gif.size == (2 * (1 * 34 + 2), 2 * (10 * 34 + 2))  # a row per class, one column, scale 2
    assert (tmp_path / "s.mp4").stat().st_size > 0
