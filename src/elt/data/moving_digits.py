"""Moving digits: class-labelled clips of real digits bouncing on a black canvas, generated, never stored.

Clip i of a split is a pure function of (seed, split, i): its digit, start position, direction and speed come
from a generator seeded by those three integers, so every rank and every epoch sees the same clip and nothing
is written to disk. Train clips draw only from the train digits, test clips only from the test digits (the
caller passes the split's digits). Geometry (Srivastava et al. 2015's bouncing, sub-pixel by bilinear shift):
a digit resized once to `digit_size`, a start position uniform on the canvas, a direction θ ~ U[0, 2π) (or
inside the class's quadrant for `label="digit_dir"`), a speed ~ U[speed_min, speed_max] px per frame; a border
crossing reflects the position and that velocity component. Several digits combine by `max`.

    ds = MovingDigits(images, labels, MOVING_DIGITS["moving-digits"], seed=0, split="train")
    clips, y = ds.get_batch([0, 1])  # uint8 (2, 1, T, H, W), int64 (2,)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import ImageDataset, SPLITS, as_index, check_split
from ..errors import DataError

LABELS = ("digit", "digit_dir")  # digit_dir: 40 classes = digit × 4 direction quadrants


@dataclass(frozen=True)
class MovingDigitsSpec:
    """Canvas side, frames, digits per clip, digit side after resizing, speed range (px per frame)."""

    canvas: int = 32
    frames: int = 8
    digits: int = 1
    digit_size: int = 16
    speed_min: float = 1.0
    speed_max: float = 3.0

    def validate(self) -> None:
        if not 1 <= self.digit_size <= self.canvas:
            raise DataError(f"moving digits: digit_size {self.digit_size} must be in 1..canvas ({self.canvas})")
        if self.frames < 1 or self.digits < 1:
            raise DataError(f"moving digits: frames and digits must be >= 1, got {self.frames}, {self.digits}")
        if not 0 <= self.speed_min <= self.speed_max:
            raise DataError(f"moving digits: need 0 <= speed_min <= speed_max, got {self.speed_min}, "
                            f"{self.speed_max}")


# the named variants: the CPU default and the standard Moving-MNIST geometry (GPU size)
MOVING_DIGITS = {"moving-digits": MovingDigitsSpec(),
                 "moving-digits-m": MovingDigitsSpec(canvas=64, frames=16, digits=2, digit_size=28)}


def quadrant(vy: np.ndarray, vx: np.ndarray) -> np.ndarray:
    """Direction quadrant of velocities, as `digit_dir` labels count them: the angle atan2(vy, vx) in [0, 2π)
    falls in quadrant floor(angle / (π/2))."""
    angle = np.mod(np.arctan2(vy, vx), 2 * np.pi)
    return np.minimum((angle // (np.pi / 2)).astype(np.int64), 3)


def bounce(start: float, velocity: float, span: float, frames: int) -> np.ndarray:
    """Positions (frames,) of a point moving at `velocity` per frame in [0, span], reflecting at both ends."""
    if span <= 0:  # the object fills the canvas along this axis: it cannot move (and would bounce forever)
        return np.zeros(frames)
    out, p, v = np.empty(frames), start, velocity
    for t in range(frames):
        out[t] = p
        p += v
        while p < 0 or p > span:  # a fast point may cross both borders in one frame only if span is tiny
            if p < 0:
                p, v = -p, -v
            if p > span:
                p, v = 2 * span - p, -v
    return out


def paste(canvas: np.ndarray, digit: np.ndarray, y: float, x: float) -> None:
    """Max-composite `digit` (h, w) float onto `canvas` (H, W) float at sub-pixel (y, x) by bilinear shift."""
    h, w = digit.shape
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - y0, x - x0
    shifted = np.zeros((h + 1, w + 1))
    shifted[:h, :w] += (1 - fy) * (1 - fx) * digit
    shifted[1:, :w] += fy * (1 - fx) * digit
    shifted[:h, 1:] += (1 - fy) * fx * digit
    shifted[1:, 1:] += fy * fx * digit
    H, W = canvas.shape
    ys, xs = slice(y0, min(y0 + h + 1, H)), slice(x0, min(x0 + w + 1, W))
    region = shifted[:ys.stop - y0, :xs.stop - x0]
    canvas[ys, xs] = np.maximum(canvas[ys, xs], region)


class MovingDigits(ImageDataset):
    """`n` clips (default: one per source digit) of `spec` from the split's digits `images` (N, h, w) uint8 and
    `labels` (N,); get_batch -> uint8 (B, 1, T, H, W) and int64 labels (B,)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, spec: MovingDigitsSpec, seed: int = 0,
                 split: str = "train", label: str = "digit", n: int | None = None):
        spec.validate()
        check_split(split)
        if label not in LABELS:
            raise DataError(f"moving digits: label must be one of {', '.join(LABELS)}, got {label!r}")
        images, labels = np.asarray(images), np.asarray(labels, dtype=np.int64)
        if images.dtype != np.uint8 or images.ndim != 3 or len(images) != len(labels) or not len(images):
            raise DataError(f"moving digits need uint8 digits (N, h, w) with N labels, got {images.dtype} "
                            f"{images.shape} and {labels.shape}")
        self.spec, self.seed, self.split, self.label = spec, seed, split, label
        size = spec.digit_size
        small = F.interpolate(torch.from_numpy(images)[:, None].float(), size=(size, size), mode="bilinear",
                              antialias=True, align_corners=False)[:, 0]
        self.digits = (small.clamp(0, 255) / 255.0).numpy()  # (N, size, size) in [0, 1], resized once
        self.digit_labels = labels
        self.n = len(images) if n is None else n
        if self.n < 1:
            raise DataError(f"moving digits: the number of clips must be >= 1, got {self.n}")
        classes = [str(d) for d in range(10)]
        self.class_names = classes if label == "digit" else [f"{d}_{q}" for d in classes for q in range(4)]
        self.num_classes = len(self.class_names)
        self.image_shape = (1, spec.frames, spec.canvas, spec.canvas)
        self.labels = torch.tensor([self._plan(i)[0] for i in range(self.n)], dtype=torch.long)

    def __len__(self) -> int:
        return self.n

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLITS.index(self.split), i])

    def _plan(self, i: int) -> tuple[int, list[tuple[int, float, float, float, float]]]:
        """Clip i -> (label, [(digit index, y0, x0, vy, vx) per digit]); the first digit names the class."""
        rng, s = self._rng(i), self.spec
        span = s.canvas - s.digit_size
        parts = []
        for k in range(s.digits):
            d = int(rng.integers(len(self.digits)))
            y0, x0 = rng.uniform(0, span, 2)
            q = int(rng.integers(4))
            theta = rng.uniform(q, q + 1) * np.pi / 2 if self.label == "digit_dir" else rng.uniform(0, 2 * np.pi)
            speed = rng.uniform(s.speed_min, s.speed_max)
            parts.append((d, y0, x0, speed * np.sin(theta), speed * np.cos(theta)))
            if k == 0:
                label = int(self.digit_labels[d]) * (4 if self.label == "digit_dir" else 1) + (
                    q if self.label == "digit_dir" else 0)
        return label, parts

    def clip_targets(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips -> (digit of the first digit (B,), its direction quadrant (B,)): what a video classifier learns,
        whatever `label` the clips carry. Quadrant q holds the angles atan2(vy, vx) in [q·π/2, (q+1)·π/2)."""
        firsts = [self._plan(int(i) % self.n)[1][0] for i in as_index(indices, self.n)]  # (d, y0, x0, vy, vx)
        digits = [int(self.digit_labels[d]) for d, *_ in firsts]
        quads = quadrant(np.array([f[3] for f in firsts]), np.array([f[4] for f in firsts]))
        return torch.tensor(digits, dtype=torch.long), torch.from_numpy(quads).long()

    def clip(self, i: int) -> np.ndarray:
        """Clip i as uint8 (T, H, W)."""
        s = self.spec
        span = s.canvas - s.digit_size
        frames = np.zeros((s.frames, s.canvas, s.canvas))
        for d, y0, x0, vy, vx in self._plan(i)[1]:
            ys, xs = bounce(y0, vy, span, s.frames), bounce(x0, vx, span, s.frames)
            for t in range(s.frames):
                paste(frames[t], self.digits[d], ys[t], xs[t])
        return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)

    def get_batch(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = as_index(indices, self.n)
        clips = np.stack([self.clip(int(i) % self.n) for i in idx]) if len(idx) else np.zeros(
            (0, *self.image_shape[1:]), np.uint8)
        return torch.from_numpy(clips)[:, None], self.labels[idx]  # (B, 1, T, H, W), (B,)
