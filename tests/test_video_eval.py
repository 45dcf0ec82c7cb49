"""Clip metrics and their wiring: centroid tracks, the bouncing-model fit (motion error, fitted direction),
per-frame agreement, the video classifier folder, `elt eval` on clip samples and `elt anytime --eval` on a clip
run (stand-in digits, no download)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from elt.data.dataset import ArrayImageDataset
from elt.data.moving_digits import MOVING_DIGITS, MovingDigits, MovingDigitsSpec, quadrant
from elt.eval.video_metrics import centroid_tracks, fit_bounce, fold, frame_agreement, motion_error
from stand_ins import bar_digits


def _clips(n: int = 60, seed: int = 0, spec: MovingDigitsSpec | None = None):
    images, labels = bar_digits()
    ds = MovingDigits(images, labels, spec or MOVING_DIGITS["moving-digits"], seed=seed, split="test", n=n)
    clips, y = ds.get_batch(torch.arange(n))
    return ds, clips[:, 0].numpy(), y.numpy()  # (N, T, H, W)


def test_centroids_find_a_single_pixel_and_an_empty_frame_is_the_centre():
    clip = np.zeros((1, 2, 8, 10), np.uint8)
    clip[0, 0, 3, 7] = 200
    tracks = centroid_tracks(clip)
    assert tracks[0, 0].tolist() == [3.0, 7.0] and tracks[0, 1].tolist() == [3.5, 4.5]


def test_fold_reflects_into_the_range():
    u = np.array([0.0, 5.0, 11.0, 17.0, -3.0])
    assert fold(u, np.array(2.0), 6.0).tolist() == [4.0, 5.0, 5.0, 5.0, 7.0]  # range [2, 8], period 12


def test_real_bouncing_clips_fit_the_motion_model_and_shuffled_frames_do_not():
    """Real clips: sub-pixel residuals; the same frames in a random order: pixels. Planted: a fit without
    reflections (fold = identity) leaves real clips that hit a border with large residuals."""
    ds, clips, _ = _clips()
    real = motion_error(clips, ds.spec.digit_size)["motion_error_px"]
    rng = np.random.default_rng(0)
    shuffled = np.stack([c[rng.permutation(len(c))] for c in clips])
    assert real < 0.4 < 1.0 < motion_error(shuffled, ds.spec.digit_size)["motion_error_px"]


def test_the_fitted_direction_is_the_clips_direction():
    """The fitted start velocity's quadrant equals the rendered one for most clips (a velocity close to an axis
    may flip). Planted: taking the sign of the fitted v (ambiguous under reflection) drops this to ~chance."""
    ds, clips, _ = _clips(n=80)
    fitted = motion_error(clips, ds.spec.digit_size)["velocity"]
    _, truth = ds.clip_targets(torch.arange(80))
    agree = (quadrant(fitted[:, 0], fitted[:, 1]) == truth.numpy()).mean()
    assert agree > 0.8


def test_fit_bounce_recovers_a_known_track():
    t = np.arange(8.0)
    track = fold(3.0 + 2.0 * t, np.array(1.0), 10.0)[None]  # bounces off 11 at t ≈ 4
    rms, vel = fit_bounce(track, span=10.0, extent=16.0)
    assert rms[0] < 0.15 and abs(vel[0] - 2.0) < 0.3


def test_frame_agreement_counts_label_matches_and_majority_matches():
    preds = np.array([[1, 1, 1, 2], [3, 3, 4, 4]])
    out = frame_agreement(preds, np.array([1, 5]))
    assert out["frame_class_consistency"] == pytest.approx(3 / 8)
    # clip 0 agrees with its majority (1) in 3 of 4 frames; clip 1 (a tie 3/4 -> 3) in 2 of 4
    assert out["identity_persistence"] == pytest.approx(5 / 8)


def test_clip_targets_give_the_digit_and_the_direction_quadrant_whatever_the_label():
    images, labels = bar_digits()
    spec = MOVING_DIGITS["moving-digits"]
    by_dir = MovingDigits(images, labels, spec, seed=1, label="digit_dir", n=30)
    plain = MovingDigits(images, labels, spec, seed=1, label="digit", n=30)
    d, q = by_dir.clip_targets(torch.arange(30))
    assert (d * 4 + q).tolist() == by_dir.labels.tolist()  # digit_dir labels are digit x quadrant
    d2, _ = plain.clip_targets(torch.arange(30))
    assert d2.tolist() == plain.labels.tolist()


@pytest.fixture
def stand_in_mnist(monkeypatch, tmp_path):
    images, labels = bar_digits(60)
    monkeypatch.setattr("elt.data.load_mnist", lambda split, cache_dir=None, download=True: ArrayImageDataset(
        images[:, None], labels, [str(d) for d in range(10)]))
    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def judge_dir(stand_in_mnist, tmp_path):
    from elt.cli import main

    out = tmp_path / "vcls"
    assert main(["eval", "train-video-classifier", "moving-digits", "--out", str(out), "--epochs", "1"]) == 0
    return out


def test_video_classifier_folder_round_trips(judge_dir):
    from elt.eval.video_classifier import is_video_judge, load_judge

    judge = load_judge(judge_dir)
    assert is_video_judge(judge_dir) and judge.clip_shape == (1, 8, 32, 32) and judge.digit_size == 16
    record = json.loads((judge_dir / "video_classifier.json").read_text())
    assert {"digit_accuracy", "direction_accuracy", "frame_accuracy"} <= set(record)


def test_elt_eval_scores_clip_samples_with_their_floors(judge_dir, tmp_path, monkeypatch):
    """Real test clips scored as samples: every measure and its floor; the labels reach the class measures
    (an oracle stands in for the barely trained frame classifier: planted, comparing with the wrong labels or
    ignoring them, the shifted-label score would not drop to 0)."""
    from elt.cli import main
    from elt.data import load_dataset

    ds = load_dataset("moving-digits", "test")
    clips, y = ds.get_batch(torch.arange(40))
    every, digits = ds.get_batch(torch.arange(len(ds)))  # the floor's clips too
    truth = {c.movedim(0, -1).numpy().tobytes(): int(d) for c, d in zip(every, digits)}

    def oracle(judge, batch):  # batch (N, T, H, W, C) -> the true digit on every frame
        return np.array([[truth[c.numpy().tobytes()]] * c.shape[0] for c in batch])
    monkeypatch.setattr("elt.eval.video_report.predict_frames", oracle)
    npz = tmp_path / "real.npz"
    np.savez(npz, arr_0=clips.movedim(1, -1).numpy(), arr_1=y.numpy())
    assert main(["eval", str(npz), "--classifier", str(judge_dir), "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    for key in ("fd_video", "clip_class_consistency", "frame_class_consistency", "identity_persistence",
                "motion_error_px"):
        assert key in report and f"{key}_real_floor" in report
    assert report["motion_error_px"] < 0.5 and report["protocol"]["samples"] == 40
    assert report["frame_class_consistency"] == 1.0 and report["identity_persistence"] == 1.0
    np.savez(npz, arr_0=clips.movedim(1, -1).numpy(), arr_1=(y.numpy() + 1) % 10)
    assert main(["eval", str(npz), "--classifier", str(judge_dir), "--out", str(tmp_path / "r2.json")]) == 0
    shifted = json.loads((tmp_path / "r2.json").read_text())
    assert shifted["frame_class_consistency"] == 0.0
    assert shifted["fd_video"] == pytest.approx(report["fd_video"])  # the features do not see labels


def test_anytime_eval_on_a_clip_run_scores_every_loop_count_and_writes_a_gif(judge_dir, tiny_cfg_dict, tmp_path):
    import yaml
    from PIL import Image

    from elt.cli import main

    d = tiny_cfg_dict()
    d["data"] = {"name": "moving-digits"}
    d["model"] |= {"image_size": 32, "channels": 1, "patch": 8, "frames": 8, "frame_patch": 4, "num_classes": 10,
                   "dim": 36, "heads": 2}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "c.yaml"), "train.steps=2", "--out", str(run), "--no-progress"]) == 0
    out = tmp_path / "any"
    assert main(["anytime", str(run), "--eval", "--classifier", str(judge_dir), "--per-class", "1", "--steps", "2",
                 "--max-loops", "2", "--out", str(out)]) == 0
    rows = json.loads((out / "anytime.json").read_text())["runs"][0]["results"]
    assert [r["loops"] for r in rows] == [1, 2]
    assert all("fd_video" in r and "motion_error_px_real_floor" in r for r in rows)
    gif = Image.open(out / "anytime.gif")
    assert gif.n_frames >= 2 and (out / "anytime_quality.png").is_file()
