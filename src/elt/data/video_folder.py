"""Real videos as class-labelled clips: any folder in class layout (`root/<class>/<video>`) and the official
UCF-101 layout (`root/UCF-101/<Class>/*.avi` with `root/ucfTrainTestlist/`), decoded on demand with PyAV (the
optional `video` extra).

Clip i of the train split starts at a frame drawn from a generator seeded by (seed, split, i), uniform over the
starts that fit `frames` frames at `frame_stride`; test clips start at frame 0. Frames are converted to grey or
RGB, the short side resized to `image_size` (antialiased bilinear) and centre-cropped to a square. A video too
short for one clip, or one PyAV cannot decode, is a DataError naming the file.

    ds = VideoFolderDataset(videos, labels, classes, frames=16, image_size=128)
    clips, y = ds.get_batch([0, 1])  # uint8 (2, C, 16, 128, 128), int64 (2,)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import SPLITS, DataError, ImageDataset, as_index, check_split

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg")


def import_av():
    """PyAV, or a DataError naming the extra that installs it."""
    try:
        import av
    except ImportError:
        raise DataError("videos (reading video folders, writing MP4) need PyAV: pip install 'elt[video]' (or pip "
                        "install av)") from None
    return av


def is_video_folder(root: Path) -> bool:
    """A folder whose class sub-folders (or those of its `train/`) hold video files."""
    base = root / "train" if (root / "train").is_dir() else root
    return any(p.suffix.lower() in VIDEO_EXTENSIONS for d in base.iterdir() if d.is_dir() for p in d.iterdir())


def list_video_folder(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """root/<class>/<video> -> (videos sorted by class then path, labels, sorted class names)."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    videos, labels = [], []
    for k, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        videos += found
        labels += [k] * len(found)
    if not videos:
        raise DataError(f"video folder {root} holds no videos ({', '.join(VIDEO_EXTENSIONS)}) in class "
                        f"sub-folders: lay it out as {root}/<class>/<video>")
    return videos, labels, classes


def read_frames(path: Path, start: int, frames: int, stride: int, channels: int) -> np.ndarray:
    """Decode frames start, start+stride, ... (`frames` of them) -> uint8 (T, H, W, C)."""
    av = import_av()
    wanted = set(range(start, start + frames * stride, stride))
    out = []
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    out.append(frame.to_ndarray(format="gray" if channels == 1 else "rgb24"))
                if len(out) == frames:
                    break
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable video ({' '.join(str(e).split())[:120]}): re-encode it "
                        f"(e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it") from None
    if len(out) < frames:
        raise DataError(f"{path} has too few frames for a clip of {frames} frames at stride {stride} from frame "
                        f"{start}: lower data.frames / data.frame_stride, or remove the video")
    clip = np.stack(out)
    return clip[..., None] if clip.ndim == 3 else clip


def frame_count(path: Path) -> int:
    """Frames in the first video stream (the container's count, else by decoding)."""
    av = import_av()
    try:
        with av.open(str(path)) as container:
            n = container.streams.video[0].frames
            if n <= 0:
                n = sum(1 for _ in container.decode(video=0))
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:
        raise DataError(f"{path} is not a readable video ({' '.join(str(e).split())[:120]}): re-encode it or "
                        f"remove it") from None
    return int(n)


def resize_crop(clip: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (T, H, W, C) -> uint8 (C, T, size, size): short side to `size` (antialiased), centre crop."""
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float()  # (T, C, H, W)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top:top + size, left:left + size]
    return x.round().clamp(0, 255).to(torch.uint8).permute(1, 0, 2, 3)  # (C, T, S, S)


class VideoFolderDataset(ImageDataset):
    """Clips of `frames` frames from videos with labels; get_batch -> uint8 (B, C, T, S, S), int64 (B,)."""

    def __init__(self, videos: Sequence[Path], labels: Sequence[int], class_names: list[str], frames: int,
                 image_size: int, channels: int = 3, frame_stride: int = 1, split: str = "train", seed: int = 0):
        check_split(split)
        if frames < 1 or frame_stride < 1 or image_size < 1:
            raise DataError(f"video clips need data.frames, data.frame_stride and data.image_size >= 1, got "
                            f"{frames}, {frame_stride}, {image_size}")
        if channels not in (1, 3):
            raise DataError(f"data.channels must be 1 (grey) or 3 (RGB) for videos, got {channels}")
        self.videos, self.class_names = [Path(v) for v in videos], list(class_names)
        self.labels = torch.tensor(list(labels), dtype=torch.long)
        self.frames, self.stride, self.size, self.channels = frames, frame_stride, image_size, channels
        self.split, self.seed = split, seed
        self.num_classes = len(self.class_names)
        self.image_shape = (channels, frames, image_size, image_size)
        self._counts: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.videos)

    def start(self, i: int) -> int:
        """First frame of clip i: 0 for the test split, else uniform over the starts that fit (seeded by i)."""
        if self.split == "test":
            return 0
        if i not in self._counts:
            self._counts[i] = frame_count(self.videos[i])
        room = self._counts[i] - ((self.frames - 1) * self.stride + 1)
        if room < 0:
            raise DataError(f"{self.videos[i]} has {self._counts[i]} frames, fewer than one clip of "
                            f"{self.frames} frames at stride {self.stride}: lower data.frames / data.frame_stride, "
                            f"or remove the video")
        return int(np.random.default_rng([self.seed, SPLITS.index(self.split), i]).integers(room + 1))

    def clip(self, i: int) -> torch.Tensor:
        """Clip i as uint8 (C, T, S, S)."""
        return resize_crop(read_frames(self.videos[i], self.start(i), self.frames, self.stride, self.channels),
                           self.size)

    def get_batch(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = as_index(indices, len(self))
        clips = [self.clip(int(i) % len(self)) for i in idx]
        out = torch.stack(clips) if clips else torch.zeros((0, *self.image_shape), dtype=torch.uint8)
        return out, self.labels[idx]
