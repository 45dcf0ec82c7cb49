"""Tests for the digit classifier used in class-consistency evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from elt.eval import classifier as clf
from elt.eval.classifier import (
    DigitClassifier,
    class_consistency,
    load_classifier,
    predict,
    save_classifier,
    train_classifier,
)


@pytest.mark.parametrize("c,h,w", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
def test_forward_shapes(c: int, h: int, w: int) -> None:
    model = DigitClassifier(in_channels=c, num_classes=7).eval()
    x = torch.rand(5, c, h, w) * 2 - 1
    assert model(x).shape == (5, 7)
    assert model.features(x).shape == (5, 128)


def _random_uint8(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class _Recorder(nn.Module):
    """Stub: records its inputs; logits are the first `num_classes` values of each flattened image."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.dummy = nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return x.flatten(1)[:, :self.num_classes]


def test_predict_layouts_and_scaling() -> None:
    x = _random_uint8(37, 3, 16, 16)  # (N, C, H, W)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0, 255
    nhwc = x.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C)
    expected_input = x.float() / 127.5 - 1
    expected_pred = expected_input.flatten(1)[:, :10].argmax(1)
    assert len(expected_pred.unique()) > 3
    for images in (x, nhwc, nhwc.numpy(), x.numpy()):
        rec = _Recorder(3, 10)
        pred = predict(rec, images, batch_size=10)
        assert pred.dtype == torch.long and torch.equal(pred, expected_pred)
        assert [t.shape[0] for t in rec.seen] == [10, 10, 10, 7]
        seen = torch.cat(rec.seen)
        assert torch.allclose(seen, expected_input)
        assert seen.min() == -1.0 and seen.max() == 1.0
    gray = _random_uint8(5, 1, 8, 8)
    assert torch.equal(predict(_Recorder(1, 10), gray[:, 0]), predict(_Recorder(1, 10), gray))  # N×H×W


def test_predict_real_model_nhwc_nchw_agree() -> None:
    torch.manual_seed(0)
    model = DigitClassifier(in_channels=3, num_classes=10).eval()
    x = _random_uint8(37, 3, 16, 16)
    ref = predict(model, x, batch_size=10)
    assert ref.shape == (37,)
    assert torch.equal(predict(model, x.permute(0, 2, 3, 1).numpy()), ref)
    assert torch.equal(ref, model(x.float() / 127.5 - 1).argmax(1))
    assert not model.training


def test_predict_rejects_float_and_wrong_channels() -> None:
    model = DigitClassifier(in_channels=1).eval()
    with pytest.raises(TypeError):
        predict(model, torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError):
        predict(model, _random_uint8(2, 3, 28, 28))


def test_save_load_roundtrip(tmp_path) -> None:
    torch.manual_seed(0)
    model = DigitClassifier(in_channels=1, num_classes=10, width=16)
    model.train()
    model(torch.randn(8, 1, 28, 28))  # move BatchNorm running stats away from their init
    model.eval()
    save_classifier(model, tmp_path / "clf", {"accuracy": 0.5, "dataset": "mnist", "image_shape": [1, 28, 28]})
    meta = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert meta["dataset"] == "mnist" and meta["accuracy"] == 0.5 and meta["arch"]["width"] == 16
    assert not [p for p in (tmp_path / "clf").iterdir() if p.name.endswith(".tmp")]
    loaded = load_classifier(tmp_path / "clf")
    assert not loaded.training
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(loaded.features(x), model.features(x))


def test_load_missing_gives_helpful_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="elt eval train-classifier"):
        load_classifier(tmp_path)


def _quadrant_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Label k = bright 5x5 square in quadrant k of a noisy 16x16 image."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.randint(0, 60, (n, 1, 16, 16), dtype=torch.uint8, generator=g)
    for i, k in enumerate(labels.tolist()):
        r = 8 * (k // 2) + int(torch.randint(0, 4, (1,), generator=g))
        c = 8 * (k % 2) + int(torch.randint(0, 4, (1,), generator=g))
        images[i, :, r:r + 5, c:c + 5] = 255
    return images, labels


def test_train_classifier_learns_separable_problem() -> None:
    x_tr, y_tr = _quadrant_data(384, seed=0)
    x_te, y_te = _quadrant_data(128, seed=1)
    rng_state = torch.get_rng_state()
    model, acc = train_classifier(x_tr, y_tr, x_te, y_te, epochs=2, batch_size=32, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_state)  # caller's RNG untouched
    assert isinstance(model, DigitClassifier) and not model.training
    assert model.num_classes == 4
    assert acc > 0.9
    assert acc == pytest.approx((predict(model, x_te) == y_te).float().mean().item())


class _FixedLogits(nn.Module):
    """Stub: logits one-hot on a fixed prediction per image, regardless of pixel values."""

    def __init__(self, preds: list[int], num_classes: int) -> None:
        super().__init__()
        self.in_channels, self.num_classes = 1, num_classes
        self.register_buffer("logits", torch.eye(num_classes)[preds])
        self.dummy = nn.Parameter(torch.zeros(()))
        self.offset = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits[self.offset:self.offset + x.shape[0]]
        self.offset += x.shape[0]
        return out


def test_class_consistency_math() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    preds = [0, 0, 0, 1, 1, 0, 2, 2]  # class 0: 3/4, class 1: 1/2, class 2: 2/2, class 3 absent
    model = _FixedLogits(preds, num_classes=4)
    images = np.zeros((8, 8, 8, 1), dtype=np.uint8)  # NHWC
    out = class_consistency(model, images, labels)
    assert out["accuracy"] == pytest.approx(6 / 8)
    assert out["per_class"][:3] == pytest.approx([0.75, 0.5, 1.0])
    assert out["per_class"][3] is None
    assert out["per_class_count"] == [4, 2, 2, 0]
    assert out["num_samples"] == 8


def test_class_consistency_length_mismatch() -> None:
    model = _FixedLogits([0, 1, 2], num_classes=3)
    with pytest.raises(ValueError):
        class_consistency(model, np.zeros((3, 8, 8, 1), dtype=np.uint8), np.array([0, 1]))


def test_random_shift_moves_content_within_bounds() -> None:
    x = torch.zeros(64, 1, 12, 12)
    x[:, :, 6, 6] = 1.0
    out = clf._random_shift(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    pos = out.flatten(1).argmax(1)
    rows, cols = pos // 12, pos % 12
    assert out.flatten(1).sum(1).eq(1).all()  # the single bright pixel survives
    assert rows.sub(6).abs().max() <= 2 and cols.sub(6).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # offsets really vary
