"""Moving digits: clips that are a pure function of (seed, split, index), stay on the canvas, bounce, keep
their class, and load by name through load_dataset (on stand-in digits, no download)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from elt.data import load_dataset
from elt.data.dataset import ArrayImageDataset
from elt.data.moving_digits import MOVING_DIGITS, MovingDigits, MovingDigitsSpec, bounce
from elt.errors import DataError


def _digits(n: int = 20, seed: int = 0):
    """Stand-in digits (n, 28, 28): a bright square whose size encodes the label."""
    labels = np.arange(n) % 10
    images = np.zeros((n, 28, 28), np.uint8)
    for i, y in enumerate(labels):
        images[i, 4:6 + 2 * y, 4:6 + 2 * y] = 255
    return images, labels


def test_a_clip_is_a_function_of_seed_split_and_index_only():
    images, labels = _digits()
    spec = MOVING_DIGITS["moving-digits"]
    a = MovingDigits(images, labels, spec, seed=3, n=50)
    b = MovingDigits(images, labels, spec, seed=3, n=7)  # another length: clip i unchanged
    x, y = a.get_batch([5, 2])
    assert x.shape == (2, 1, 8, 32, 32) and x.dtype == torch.uint8 and a.image_shape == (1, 8, 32, 32)
    assert torch.equal(x, b.get_batch([5, 2])[0]) and torch.equal(y, b.get_batch([5, 2])[1])
    assert not torch.equal(x, MovingDigits(images, labels, spec, seed=4, n=7).get_batch([5, 2])[0])
    assert not torch.equal(x, MovingDigits(images, labels, spec, seed=3, split="test", n=7).get_batch([5, 2])[0])


def test_bouncing_stays_in_range_and_reflects():
    ys = bounce(9.0, 2.5, 10.0, 8)  # 9 -> 11.5 reflects to 8.5 (moving down), 1 -> -1.5 to 1.5 (moving up)
    assert np.allclose(ys, [9.0, 8.5, 6.0, 3.5, 1.0, 1.5, 4.0, 6.5])
    assert (bounce(0.3, -7.0, 16.0, 50) >= 0).all() and (bounce(0.3, -7.0, 16.0, 50) <= 16).all()


def test_the_digit_moves_and_keeps_its_mass_and_class():
    images, labels = _digits()
    ds = MovingDigits(images, labels, MovingDigitsSpec(speed_min=2.0, speed_max=2.0), n=30)
    clips, y = ds.get_batch(range(30))
    mass = clips.float().sum(dim=(2, 3, 4))  # (B, 1)
    frames = clips[:, 0].float()  # (B, T, H, W)
    per_frame = frames.sum(dim=(2, 3))  # (B, T)
    assert (per_frame.std(1) / per_frame.mean(1) < 0.05).all()  # one digit, fully on the canvas every frame
    assert (mass > 0).all() and not torch.equal(frames[:, 0], frames[:, 1])
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    cy = (frames * ys).sum(dim=(2, 3)) / per_frame  # (B, T) centroid rows
    cx = (frames * xs).sum(dim=(2, 3)) / per_frame
    step = torch.hypot(cy.diff(1), cx.diff(1))  # px per frame; reflections only shorten a step
    assert (step <= 2.0 + 0.05).all() and (step.median() > 1.5)
    # the label is the class of the digit drawn: the stand-in's square side encodes it
    rows = (clips[:, 0, 0] > 64).any(2).sum(1).float()  # (B,) rows of frame 0 brighter than a quarter
    assert ((rows - (2 + 2 * y.float()) * 16 / 28).abs() < 2).all()
    means = [rows[y == k].mean() for k in sorted(set(y.tolist()))]  # the square grows with the class
    assert all(a < b for a, b in zip(means, means[1:]))
    assert torch.equal(y, torch.tensor([int(labels[ds._plan(i)[1][0][0]]) for i in range(30)]))


def test_digit_dir_labels_name_the_direction_quadrant():
    images, labels = _digits()
    ds = MovingDigits(images, labels, MovingDigitsSpec(frames=3, speed_min=1.0, speed_max=1.0), label="digit_dir",
                      n=40)
    assert ds.num_classes == 40
    for i in range(40):
        label, ((d, _, _, vy, vx),) = ds._plan(i)
        q = label % 4
        assert label // 4 == labels[d] and (vy >= 0) == (q in (0, 1)) and (vx >= 0) == (q in (0, 3))


def test_moving_digits_by_name_use_the_split_s_digits(monkeypatch):
    images, labels = _digits()
    calls = []

    def fake_mnist(split, cache_dir=None, download=True):
        calls.append(split)
        return ArrayImageDataset(images[:, None], labels, [str(d) for d in range(10)])

    monkeypatch.setattr("elt.data.load_mnist", fake_mnist)
    ds = load_dataset("moving-digits", "test")
    assert calls == ["test"] and len(ds) == 20 and ds.image_shape == (1, 8, 32, 32)
    with pytest.raises(DataError, match="fixed geometry .*leave data.image_size and data.channels unset"):
        load_dataset("moving-digits", "train", image_size=28)


@pytest.mark.parametrize("kwargs,message", [
    ({"label": "motion"}, "label must be one of digit, digit_dir"),
    ({"n": 0}, "number of clips must be >= 1"),
    ({"spec": MovingDigitsSpec(digit_size=40)}, "digit_size 40 must be in 1..canvas"),
    ({"spec": MovingDigitsSpec(speed_min=3.0, speed_max=1.0)}, "need 0 <= speed_min <= speed_max"),
])
def test_bad_moving_digit_settings_say_what_to_change(kwargs, message):
    images, labels = _digits()
    spec = kwargs.pop("spec", MOVING_DIGITS["moving-digits"])
    with pytest.raises(DataError, match=message):
        MovingDigits(images, labels, spec, **kwargs)


def test_a_clip_model_trains_and_samples_on_moving_digits(tiny_cfg_dict, tmp_path, monkeypatch):
    """`data.name: moving-digits` feeds the flow family's clip model (model.frames) through `elt train`."""
    import yaml

    from elt.cli import main

    images, labels = _digits()
    monkeypatch.setattr("elt.data.load_mnist", lambda split, cache_dir=None, download=True: ArrayImageDataset(
        images[:, None], labels, [str(d) for d in range(10)]))
    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))
    d = tiny_cfg_dict()
    d["data"] = {"name": "moving-digits"}
    d["model"] |= {"image_size": 32, "channels": 1, "patch": 8, "frames": 8, "frame_patch": 4, "num_classes": 10, "dim": 36,
                   "heads": 2}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "c.yaml"), "train.steps=2", "--out", str(run), "--no-progress"]) == 0
    assert main(["sample", str(run), "--labels", "3", "--steps", "1", "--out", str(tmp_path / "s.npz")]) == 0
    assert np.load(tmp_path / "s.npz")["arr_0"].shape == (1, 8, 32, 32, 1)  # N, T, H, W, C


def test_an_object_as_wide_as_the_canvas_stays_put_instead_of_bouncing_forever():
    """span 0 (digit_size == canvas): every reflection lands outside [0, 0] again; the position must be 0."""
    assert bounce(0.0, 2.5, 0.0, 4).tolist() == [0.0, 0.0, 0.0, 0.0]
    images, labels = _digits()
    clip, _ = MovingDigits(images, labels, MovingDigitsSpec(canvas=16, digit_size=16, frames=3), n=2).get_batch([1])
    assert clip.shape == (1, 1, 3, 16, 16) and bool((clip[0, 0, 0] == clip[0, 0, 2]).all())
