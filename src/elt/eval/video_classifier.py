"""Small 3-D conv classifier of real moving-digit clips: the feature space of FD-video-classifier, plus a
digit head and a direction-quadrant head, and beside it a per-frame digit classifier (the image
`DigitClassifier`, trained on single frames of the same clips) for per-frame class-consistency.

A folder made by `elt eval train-video-classifier moving-digits --out DIR` holds `video_classifier.safetensors`,
`video_classifier.json` (architecture, the clip shape and data spec it was trained on, held-out accuracies)
and `frames/` (the frame classifier, in the image classifier's own format).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from ..atomic import write_text_atomic
from ..codecs.pixel import to_unit
from ..data import DataError
from ..weights import save_weights
from .classifier import DigitClassifier, load_classifier, predict, save_classifier, train_classifier

WEIGHTS_NAME = "video_classifier.safetensors"
META_NAME = "video_classifier.json"
FRAMES_DIR = "frames"
FEATURE_DIM = 128


def _block(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(cout),
                         nn.ReLU(inplace=True))


class VideoClassifier(nn.Module):
    """3-D CNN for clips (B, C, T, H, W) in [-1, 1]: conv(w) - conv(2w, /2 space) - conv(4w, /2 time and space)
    - conv(4w) - global average pool - fc(128) -> digit logits (10) and direction-quadrant logits (4)."""

    def __init__(self, in_channels: int = 1, num_digits: int = 10, width: int = 16):
        super().__init__()
        self.in_channels, self.num_digits, self.width = in_channels, num_digits, width
        self.body = nn.Sequential(_block(in_channels, width, (1, 1, 1)), _block(width, 2 * width, (1, 2, 2)),
                                  _block(2 * width, 4 * width, (2, 2, 2)), _block(4 * width, 4 * width, (1, 1, 1)),
                                  nn.AdaptiveAvgPool3d(1))
        self.fc = nn.Linear(4 * width, FEATURE_DIM)
        self.digit = nn.Linear(FEATURE_DIM, num_digits)
        self.direction = nn.Linear(FEATURE_DIM, 4)

    def arch_args(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "num_digits": self.num_digits, "width": self.width}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) in [-1, 1] -> (B, 128) penultimate features."""
        return F.relu(self.fc(self.body(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.digit(h), self.direction(h)  # (B, 10), (B, 4)


@dataclass
class VideoJudge:
    """A trained video classifier, its frame classifier and what they were trained on."""

    net: VideoClassifier
    frames: DigitClassifier
    record: dict  # the json record: clip_shape (C, T, H, W), data, digit_size, accuracies
    directory: Path

    @property
    def clip_shape(self) -> tuple[int, ...]:
        return tuple(self.record["clip_shape"])

    @property
    def digit_size(self) -> int:
        return int(self.record["digit_size"])


def _clips_in(clips: torch.Tensor) -> torch.Tensor:
    """uint8 clips (N, T, H, W, C) -> float (N, C, T, H, W) in [-1, 1]."""
    return to_unit(clips.movedim(-1, 1))


@torch.no_grad()
def _apply(net: nn.Module, fn, clips: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    net.eval()
    out = [fn(_clips_in(clips[i:i + batch_size])) for i in range(0, len(clips), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


def embed_clips(net: VideoClassifier, clips: torch.Tensor) -> np.ndarray:
    """uint8 clips (N, T, H, W, C) -> (N, 128) float32 features."""
    return _apply(net, net.features, clips).numpy().astype(np.float32)


def predict_clips(net: VideoClassifier, clips: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """uint8 clips (N, T, H, W, C) -> (digit (N,), direction quadrant (N,)) predictions of the video network."""
    def both(x):
        d, q = net(x)
        return torch.stack([d.argmax(1), q.argmax(1)], 1)
    out = _apply(net, both, clips)
    return out[:, 0].numpy(), out[:, 1].numpy()


def predict_frames(judge: VideoJudge, clips: torch.Tensor) -> np.ndarray:
    """uint8 clips (N, T, H, W, C) -> per-frame digit predictions (N, T) of the frame classifier."""
    n, t = clips.shape[:2]
    frames = clips.reshape(n * t, *clips.shape[2:]).movedim(-1, 1)  # (N·T, C, H, W) uint8
    return predict(judge.frames, frames).reshape(n, t).numpy()


def train_video_classifier(train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                           test: tuple[torch.Tensor, torch.Tensor, torch.Tensor], *, epochs: int = 4,
                           batch_size: int = 64, lr: float = 2e-3, seed: int = 0, progress: bool = True
                           ) -> tuple[VideoClassifier, dict]:
    """Train on (uint8 clips (N, C, T, H, W), digits (N,), quadrants (N,)); return (model in eval mode,
    {"digit_accuracy", "direction_accuracy"} on `test`)."""
    clips, digits, quads = train
    n = len(clips)
    steps = epochs * math.ceil(n / batch_size)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = VideoClassifier(clips.shape[1], int(digits.max()) + 1)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
        net.train()
        with tqdm(total=steps, desc="video classifier", disable=not progress) as bar:
            for _ in range(epochs):
                perm = torch.randperm(n, generator=gen)
                for i in range(0, n, batch_size):
                    idx = perm[i:i + batch_size]
                    d, q = net(to_unit(clips[idx]))
                    loss = F.cross_entropy(d, digits[idx]) + F.cross_entropy(q, quads[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    net.eval()
    tc, td, tq = test
    pd, pq = predict_clips(net, tc.movedim(1, -1))  # (N, C, T, H, W) -> channels-last
    return net, {"digit_accuracy": float((pd == td.numpy()).mean()),
                 "direction_accuracy": float((pq == tq.numpy()).mean())}


def fit_judge(train_set, test_set, out_dir: str | os.PathLike, *, epochs: int = 4, frame_epochs: int = 3,
              seed: int = 0, progress: bool = True) -> dict:
    """Train the video and frame classifiers on two MovingDigits splits and save them in `out_dir`;
    returns the record written."""
    def take(ds):
        idx = torch.arange(len(ds))
        clips, _ = ds.get_batch(idx)  # (N, 1, T, H, W)
        digits, quads = ds.clip_targets(idx)
        return clips, digits, quads
    train, test = take(train_set), take(test_set)
    net, acc = train_video_classifier(train, test, epochs=epochs, seed=seed, progress=progress)
    g = torch.Generator().manual_seed(seed)

    def frames_of(clips, digits, per_clip):  # a few frames of every clip -> (N·k, C, H, W), (N·k,)
        t = torch.stack([torch.randperm(clips.shape[2], generator=g)[:per_clip] for _ in range(len(clips))])
        picked = clips[torch.arange(len(clips))[:, None], :, t]  # (N, k, C, H, W)
        return picked.flatten(0, 1), digits.repeat_interleave(per_clip)
    frame_net, frame_acc = train_classifier(*frames_of(*train[:2], 2), *frames_of(*test[:2], 2),
                                            epochs=frame_epochs, seed=seed, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = train_set.spec
    record = {"data": "moving-digits", "clip_shape": list(train_set.image_shape), "digit_size": spec.digit_size,
              "speed_max": spec.speed_max, "train_clips": len(train_set), "test_clips": len(test_set),
              **acc, "frame_accuracy": frame_acc, "arch": net.arch_args()}
    c, _, h, w = train_set.image_shape
    save_classifier(frame_net, out / FRAMES_DIR, {"data": "moving-digits frames", "test_accuracy": frame_acc,
                                                  "image_shape": [c, h, w]})
    save_weights(net.state_dict(), out / WEIGHTS_NAME)
    write_text_atomic(out / META_NAME, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def is_video_judge(directory: str | os.PathLike) -> bool:
    return (Path(directory) / META_NAME).is_file()


def load_judge(directory: str | os.PathLike) -> VideoJudge:
    """Load a folder written by `fit_judge`; DataError says what is wrong with it."""
    d = Path(directory)
    again = f"train it again with `elt eval train-video-classifier moving-digits --out {d}`"
    if not (d / META_NAME).is_file() or not (d / WEIGHTS_NAME).is_file():
        raise DataError(f"no video classifier in {d} (missing {META_NAME} or {WEIGHTS_NAME}): {again}")
    try:
        record = json.loads((d / META_NAME).read_text())
        net = VideoClassifier(**record["arch"])
        clip_shape = [int(v) for v in record["clip_shape"]]
        int(record["digit_size"])
    except (ValueError, KeyError, TypeError) as e:
        why = f"no {e}" if isinstance(e, KeyError) else " ".join(str(e).split())
        raise DataError(f"{d / META_NAME} is not a video classifier record ({why}): {again}") from None
    if len(clip_shape) != 4:
        raise DataError(f"{d / META_NAME}: clip_shape must be (C, T, H, W), got {clip_shape}: {again}")
    try:
        net.load_state_dict(load_file(str(d / WEIGHTS_NAME)))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise DataError(f"{d / WEIGHTS_NAME} does not hold the network {d / META_NAME} describes "
                        f"({' '.join(str(e).split())[:120]}): {again}") from None
    try:
        frames = load_classifier(d / FRAMES_DIR)
    except FileNotFoundError:
        raise DataError(f"{d / FRAMES_DIR} holds no frame classifier: {again}") from None
    return VideoJudge(net.eval(), frames, record, d)


def check_clips(judge: VideoJudge, clips: np.ndarray | torch.Tensor, where: str = "") -> None:
    """uint8 clips (N, T, H, W, C) must have the shape the judge was trained on."""
    c, t, h, w = judge.clip_shape
    if tuple(clips.shape[1:]) != (t, h, w, c):
        raise DataError(f"{where}clips of shape {tuple(clips.shape[1:])} (T, H, W, C) do not fit the video "
                        f"classifier in {judge.directory}, trained on {(t, h, w, c)}: train one on clips of this "
                        f"geometry (`elt eval train-video-classifier DATA --out DIR`)")
