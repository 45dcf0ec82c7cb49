"""Real-video data: a folder of videos in class layout and the official UCF-101 layout, on tiny videos the test
writes itself with PyAV (the `video` extra); every frame's brightness encodes its index, so the tests can tell
which frames came back, in which order. Also `data.label` for moving digits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from elt.data import load_dataset
from elt.data.dataset import ArrayImageDataset
from elt.errors import DataError

av = pytest.importorskip("av")
from stand_ins import LEVEL, write_fake_ucf101, write_video  # frame t painted at LEVEL·t, white top-left square


def frame_ids(clip: torch.Tensor) -> list[int]:
    """uint8 (C, T, S, S) -> each frame's index, read from the brightness of its bottom-right corner."""
    return [round(float(clip[0, t, -4:, -4:].float().mean()) / LEVEL) for t in range(clip.shape[1])]


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    """A UCF-101 root: 3 classes x 2 videos of 12 frames, official lists for split 1, classInd."""
    return write_fake_ucf101(tmp_path_factory.mktemp("ucf"), 12)


def test_ucf101_split_1_reads_the_lists_and_class_index(ucf):
    tr = load_dataset(str(ucf), "train", image_size=16, frames=4)
    te = load_dataset(str(ucf), "test", image_size=16, frames=4)
    assert (len(tr), len(te), tr.num_classes) == (3, 3, 3)
    assert tr.class_names == ["ApplyEyeMakeup", "Biking", "Diving"] and tr.labels.tolist() == [0, 1, 2]
    clips, y = te.get_batch([2])
    assert clips.shape == (1, 3, 4, 16, 16) and clips.dtype == torch.uint8 and y.tolist() == [2]
    assert frame_ids(clips[0]) == [0, 1, 2, 3]  # test clips start at frame 0


def test_split_all_trains_on_every_video_and_has_no_test_split(ucf):
    assert len(load_dataset(str(ucf), "train", image_size=16, frames=4, split_list="all")) == 6
    with pytest.raises(DataError, match="split_list: all trains on every video, so there is no test split"):
        load_dataset(str(ucf), "test", image_size=16, frames=4, split_list="all")


def test_train_clips_start_where_seed_and_index_say_in_order_and_at_the_stride(ucf):
    a = load_dataset(str(ucf), "train", image_size=16, frames=3, frame_stride=2)
    b = load_dataset(str(ucf), "train", image_size=16, frames=3, frame_stride=2)
    starts = [a.start(i) for i in range(3)]
    assert starts == [b.start(i) for i in range(3)]  # a function of (seed, split, index)
    assert all(0 <= s <= 12 - 5 for s in starts)  # the clip of 3 frames at stride 2 spans 5 frames
    clip = a.get_batch([1])[0][0]
    assert frame_ids(clip) == [starts[1], starts[1] + 2, starts[1] + 4]  # planted: stride ignored -> fails


def test_the_short_side_is_resized_and_the_centre_cropped(ucf):
    clip = load_dataset(str(ucf), "test", image_size=12, frames=1).get_batch([0])[0][0]  # 24x32 -> 12x16 -> 12x12
    # the white 8x8 corner square becomes 4x4 at scale 1/2, cut by the 2-column crop on the left: ~4 rows x 2 cols
    bright = clip[0, 0] > 200
    assert bright[:3, :2].all() and not bright[5:, :].any() and not bright[:, 2:].any()  # left 2 columns cut


def test_a_plain_video_folder_in_class_layout(tmp_path):
    for c in ("cats", "dogs"):
        write_video(tmp_path / "vids" / c / "a.mp4", 6)
    ds = load_dataset(str(tmp_path / "vids"), "train", image_size=8, frames=2, channels=1)
    assert ds.class_names == ["cats", "dogs"] and ds.image_shape == (1, 2, 8, 8)
    assert ds.get_batch([0, 1])[0].shape == (2, 1, 2, 8, 8)


@pytest.mark.parametrize("kwargs,message", [
    ({"frames": 20}, r"has 12 frames, fewer than one clip of 20 frames at stride 1"),
    ({"frames": 4, "split_list": "4"}, r"data.split_list must be one of 1, 2, 3, all"),
    ({}, r"holds videos: set data.frames .* and data.image_size"),
])
def test_bad_video_settings_say_what_to_change(ucf, kwargs, message):
    with pytest.raises(DataError, match=message):
        ds = load_dataset(str(ucf), "train", **({"image_size": 16} if kwargs else {}), **kwargs)
        ds.get_batch([0])


def test_missing_lists_missing_videos_and_unreadable_files_are_named(tmp_path, ucf):
    import shutil

    root = tmp_path / "u"
    shutil.copytree(ucf, root)
    (root / "UCF-101" / "Biking" / "v_Biking_g01_c01.avi").write_bytes(b"not a video")
    with pytest.raises(DataError, match=r"v_Biking_g01_c01\.avi is not a readable video"):
        load_dataset(str(root), "train", image_size=16, frames=2).get_batch([1])
    (root / "UCF-101" / "Diving" / "v_Diving_g01_c01.avi").unlink()
    with pytest.raises(DataError, match=r"1 videos of the UCF-101 train list are missing .*v_Diving_g01_c01\.avi"):
        load_dataset(str(root), "train", image_size=16, frames=2)
    (root / "ucfTrainTestlist" / "classInd.txt").unlink()
    with pytest.raises(DataError, match=r"classInd\.txt is missing"):
        load_dataset(str(root), "train", image_size=16, frames=2)


def test_moving_digits_label_kind_reaches_the_clips(monkeypatch):
    images = np.zeros((20, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 255
    labels = np.arange(20) % 10
    monkeypatch.setattr("elt.data.load_mnist", lambda split, cache_dir=None, download=True: ArrayImageDataset(
        images[:, None], labels, [str(d) for d in range(10)]))
    assert load_dataset("moving-digits", label="digit_dir").num_classes == 40
    assert load_dataset("moving-digits").num_classes == 10
    with pytest.raises(DataError, match="data.label is for moving digits"):
        load_dataset("mnist", label="digit")
    with pytest.raises(DataError, match="data.frames do not apply to moving-digits"):
        load_dataset("moving-digits", frames=4)
