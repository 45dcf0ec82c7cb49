"""Small digit classifier used to score generated samples (class-consistency, classifier-space FD)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from ..atomic import atomic_path
from ..codecs.pixel import to_unit
from ..data import DataError
from ..weights import save_weights

WEIGHTS_NAME = "classifier.safetensors"
META_NAME = "classifier.json"
FEATURE_DIM = 128


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitClassifier(nn.Module):
    """CNN for (B, C, H, W) images in [-1, 1], any H, W >= 8.

    conv(w)-pool-conv(w)-pool-conv(2w)-conv(2w)-adaptive pool(3x3)-dropout-fc(128)-fc(classes).
    Pooling early keeps it fast enough to train on a couple of CPU cores.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, dropout: float = 0.3):
        super().__init__()
        self.in_channels, self.num_classes, self.width, self.dropout = in_channels, num_classes, width, dropout
        self.body = nn.Sequential(
            _conv_block(in_channels, width),
            nn.MaxPool2d(2),  # H/2
            _conv_block(width, width),
            nn.MaxPool2d(2),  # H/4
            _conv_block(width, 2 * width),
            _conv_block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(3),  # (B, 2w, 3, 3) whatever H, W
        )
        self.drop = nn.Dropout(dropout)
        self.fc1 = nn.Linear(2 * width * 9, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, num_classes)

    def arch_args(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "num_classes": self.num_classes, "width": self.width,
                "dropout": self.dropout}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, 128) penultimate features."""
        h = self.body(x).flatten(1)  # (B, 2w * 9)
        return F.relu(self.fc1(self.drop(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, num_classes) logits."""
        return self.fc2(self.features(x))


def _random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image of (B, C, H, W) by an independent integer offset in [-max_shift, max_shift]."""
    n, c, h, w = x.shape
    xp = F.pad(x, (max_shift,) * 4, mode="replicate")  # (B, C, H+2s, W+2s)
    dy = torch.randint(0, 2 * max_shift + 1, (n, 1), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n, 1), generator=gen)
    iy = dy + torch.arange(h)  # (B, H)
    ix = dx + torch.arange(w)  # (B, W)
    b = torch.arange(n)[:, None, None, None]
    ch = torch.arange(c)[None, :, None, None]
    return xp[b, ch, iy[:, None, :, None], ix[:, None, None, :]]  # (B, C, H, W)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_classifier(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    augment: bool = True,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[DigitClassifier, float]:
    """Train on uint8 (N, C, H, W) images / int64 labels; return (model in eval mode, held-out accuracy)."""
    if train_images.dtype != torch.uint8 or train_images.ndim != 4:
        shape = tuple(train_images.shape)
        raise TypeError(f"train_images must be uint8 (N, C, H, W), got {train_images.dtype} {shape}")
    if epochs < 1 or len(train_images) != len(train_labels):
        raise ValueError(f"need epochs >= 1 and one label per image (epochs={epochs}, "
                         f"{len(train_images)} images, {len(train_labels)} labels)")
    train_labels = train_labels.long()
    n = train_images.shape[0]
    num_classes = int(max(train_labels.max().item(), test_labels.max().item())) + 1
    steps_per_epoch = math.ceil(n / batch_size)
    gen = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # seeded init/dropout without touching the caller's RNG
        torch.manual_seed(seed)
        # channels_last: ~1.4x faster convolutions on CPU
        model = DigitClassifier(train_images.shape[1], num_classes).to(device, memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.2)
        model.train()
        bar = tqdm(total=epochs * steps_per_epoch, desc="classifier", disable=not progress)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(steps_per_epoch):
                idx = perm[i * batch_size:(i + 1) * batch_size]
                x = to_unit(train_images[idx])  # (b, C, H, W)
                if augment:
                    x = _random_shift(x, 2, gen)
                x = x.to(device, memory_format=torch.channels_last)
                loss = F.cross_entropy(model(x), train_labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()
    model.eval()
    acc = (predict(model, test_images) == test_labels.long().cpu()).float().mean().item()
    return model, acc


def _atomic_write(path: Path, write: Any) -> None:
    """Call write(tmp_path) on a temp file next to path, then os.replace it into place."""
    with atomic_path(path) as tmp:
        write(str(tmp))


def save_classifier(model: DigitClassifier, out_dir: str | os.PathLike, meta: dict) -> Path:
    """Write classifier.safetensors + classifier.json (arch args merged with meta) into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / WEIGHTS_NAME, lambda p: save_weights(model.state_dict(), p))
    record = {**meta, "arch": model.arch_args()}
    text = json.dumps(record, indent=2, sort_keys=True)
    _atomic_write(out / META_NAME, lambda p: Path(p).write_text(text + "\n"))
    return out


def load_classifier(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> DigitClassifier:
    """Load a classifier saved by save_classifier (eval mode)."""
    d = Path(directory)
    missing = [name for name in (WEIGHTS_NAME, META_NAME) if not (d / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"no trained classifier in '{d}' (missing {', '.join(missing)}); "
            "run `elt eval train-classifier` first"
        )
    again = f"train it again with `elt eval train-classifier DATA --out {d}`"
    try:
        record = json.loads((d / META_NAME).read_text())
        model = DigitClassifier(**record["arch"])
    except (ValueError, KeyError, TypeError) as e:  # not JSON / no "arch" / unknown architecture keys
        why = f"no {e}" if isinstance(e, KeyError) else " ".join(str(e).split())
        raise DataError(f"{d / META_NAME} is not a classifier record ({why}): {again}") from None
    try:
        state = load_file(str(d / WEIGHTS_NAME), device=str(map_location))
    except (SafetensorError, OSError) as e:
        raise DataError(f"{d / WEIGHTS_NAME} is not a readable weights file ({' '.join(str(e).split())}): "
                        f"{again}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise DataError(f"{d / WEIGHTS_NAME} does not match the architecture in {d / META_NAME} (missing or "
                        f"differently shaped tensors): {again}") from None
    shape = record.get("image_shape") if isinstance(record, dict) else None
    model.image_shape = tuple(int(v) for v in shape) if isinstance(shape, list) and len(shape) == 3 else None
    return model.to(map_location).eval()


MIN_SIDE = 4  # two 2× poolings must leave at least one pixel


def check_input(model: DigitClassifier, images: np.ndarray | torch.Tensor, where: str = "") -> None:
    """uint8 N×H×W×C images must fit the classifier: its channels, at least MIN_SIDE pixels a side, and the
    size it was trained at when its record says (another size would score without error, but meaninglessly)."""
    n, h, w, c = tuple(images.shape)
    retrain = "train a classifier on data of that shape (`elt eval train-classifier DATA --image-size S " \
              "--channels C --out CLS_DIR`)"
    if c != model.in_channels:
        kind = {1: "grey", 3: "RGB"}
        raise DataError(f"{where}images have {c} channel(s) ({kind.get(c, 'shape ' + str((h, w, c)))}) but the "
                        f"classifier takes {model.in_channels} ({kind.get(model.in_channels, '?')}): {retrain}")
    trained = getattr(model, "image_shape", None)
    if trained is not None and (h, w) != tuple(trained[1:]):
        raise DataError(f"{where}images are {h}×{w} but the classifier was trained on {trained[1]}×{trained[2]} "
                        f"images: {retrain}")
    if min(h, w) < MIN_SIDE:
        raise DataError(f"{where}images are {h}×{w}, smaller than the classifier can take ({MIN_SIDE}×{MIN_SIDE} "
                        f"at least): {retrain}")


def _as_nchw_uint8(images: np.ndarray | torch.Tensor, channels: int) -> torch.Tensor:
    """Accept uint8 N×H×W×C (the .npz convention), N×C×H×W or, for C=1, N×H×W; return N×C×H×W."""
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {x.dtype}")
    if x.ndim == 3 and channels == 1:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"expected 4-d images, got shape {tuple(x.shape)}")
    if x.shape[1] == channels:
        return x
    if x.shape[-1] == channels:
        return x.permute(0, 3, 1, 2)
    raise ValueError(f"images of shape {tuple(x.shape)} have no axis of {channels} channels")


@torch.no_grad()
def _apply(model: DigitClassifier, fn, images: np.ndarray | torch.Tensor, batch_size: int,
           empty: torch.Tensor) -> torch.Tensor:
    """fn(model input batch in [-1, 1]) over uint8 images (NHWC or NCHW) in eval mode, concatenated on CPU."""
    x = _as_nchw_uint8(images, model.in_channels)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    out = [fn(to_unit(x[i:i + batch_size].to(device))).cpu() for i in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else empty


def predict(model: DigitClassifier, images: np.ndarray | torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """uint8 images (NHWC or NCHW, numpy or torch) -> (N,) int64 predicted labels on CPU."""
    return _apply(model, lambda x: model(x).argmax(1), images, batch_size, torch.empty(0, dtype=torch.long))


def probabilities(model: DigitClassifier, images: np.ndarray | torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """uint8 images -> (N, num_classes) softmax probabilities (for the Inception Score)."""
    return _apply(model, lambda x: model(x).float().softmax(1), images, batch_size,
                  torch.empty(0, model.num_classes))


def embed(model: DigitClassifier, images: np.ndarray | torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """uint8 images -> (N, FEATURE_DIM) penultimate features, for Fréchet distance in classifier space."""
    return _apply(model, model.features, images, batch_size, torch.empty(0, FEATURE_DIM))


def class_consistency(
    model: DigitClassifier, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor
) -> dict[str, Any]:
    """Share of images classified as their conditioning label: overall and per class (None if a class is absent)."""
    y = torch.as_tensor(np.asarray(labels) if isinstance(labels, np.ndarray) else labels).long().cpu()
    pred = predict(model, images)
    if pred.shape != y.shape:
        raise ValueError(f"{pred.shape[0]} images but labels of shape {tuple(y.shape)}")
    hit = (pred == y).float()
    per_class: list[float | None] = []
    counts: list[int] = []
    for c in range(model.num_classes):
        mask = y == c
        counts.append(int(mask.sum()))
        per_class.append(hit[mask].mean().item() if counts[-1] else None)
    return {
        "accuracy": hit.mean().item() if len(y) else float("nan"),
        "per_class": per_class,
        "per_class_count": counts,
        "num_samples": int(len(y)),
    }
