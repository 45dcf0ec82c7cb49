"""The official UCF-101 layout: `ROOT/UCF-101/<Class>/v_<Class>_gGG_cCC.avi` and `ROOT/ucfTrainTestlist/` with
`classInd.txt` ("1 ApplyEyeMakeup", 1-based), `trainlist0{1,2,3}.txt` ("ApplyEyeMakeup/v_....avi 1") and
`testlist0{1,2,3}.txt` (no label). `data.split_list`: 1, 2 or 3 (the official train/test lists; split 1 is
9,537 / 3,783 videos) or `all` (every listed video is a train clip; there is then no test split).
"""
from __future__ import annotations

from pathlib import Path

from .dataset import DataError

LISTS = "ucfTrainTestlist"
SPLIT_LISTS = ("1", "2", "3", "all")


def is_ucf101(root: Path) -> bool:
    return (root / LISTS).is_dir()


def _videos_root(root: Path) -> Path:
    return root / "UCF-101" if (root / "UCF-101").is_dir() else root


def read_class_index(root: Path) -> list[str]:
    """classInd.txt -> class names in label order (file index 1 -> label 0)."""
    path = root / LISTS / "classInd.txt"
    if not path.is_file():
        raise DataError(f"{path} is missing: a UCF-101 root holds ucfTrainTestlist/classInd.txt from the official "
                        f"archive (UCF101TrainTestSplits-RecognitionTask.zip)")
    entries = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{path} line {n} is {line!r}; expected '<index> <ClassName>'")
        entries[int(parts[0])] = parts[1]
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise DataError(f"{path}: class indices must run 1..{len(entries)} without gaps")
    return [entries[i] for i in range(1, len(entries) + 1)]


def _list_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path} is missing: a UCF-101 root holds the official train/test lists in {LISTS}/")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def ucf101_split(root: Path, split: str, split_list: str | int | None) -> tuple[list[Path], list[int], list[str]]:
    """(videos, labels, class names) of one split of a UCF-101 root."""
    which = "1" if split_list is None else str(split_list)
    if which not in SPLIT_LISTS:
        raise DataError(f"data.split_list must be one of {', '.join(SPLIT_LISTS)} for UCF-101, got {split_list!r}")
    classes = read_class_index(root)
    index = {name: k for k, name in enumerate(classes)}
    lists = root / LISTS
    if which == "all":
        if split == "test":
            raise DataError("data.split_list: all trains on every video, so there is no test split: use 1, 2 or 3 "
                            "for held-out evaluation")
        names = sorted(set(_list_lines(lists / "trainlist01.txt")) | set(_list_lines(lists / "testlist01.txt")))
    else:
        names = _list_lines(lists / f"{'train' if split == 'train' else 'test'}list0{which}.txt")
    videos_root = _videos_root(root)
    videos, labels, missing = [], [], []
    for name in names:
        cls = name.split("/")[0]
        if cls not in index:
            raise DataError(f"{name} in the split lists names class {cls!r}, which classInd.txt does not list")
        path = videos_root / name
        if not path.is_file():
            missing.append(name)
        videos.append(path)
        labels.append(index[cls])
    if missing:
        raise DataError(f"{len(missing)} videos of the UCF-101 {split} list are missing under {videos_root} "
                        f"(first: {missing[0]}): extract the whole archive (UCF101.rar) there")
    return videos, labels, classes
