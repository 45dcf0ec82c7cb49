"""Sample files (`elt sample`'s .npz: arr_0 uint8 images N×H×W×C, arr_1 integer labels) read and checked,
so that a bad file is one clear DataError, never a traceback or a silently wrong score."""
from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..data import DataError

REWRITE = "write it with `elt sample RUN_DIR --out FILE.npz`"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def load_samples(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A samples .npz -> (uint8 images N×H×W×C or clips N×T×H×W×C, int64 labels (N,)); DataError says what is
    wrong with it."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a samples file: pass a .npz written by `elt sample`")
    if not path.is_file():
        raise DataError(f"{path} does not exist: pass a .npz written by `elt sample`")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        why = "not a zip archive" if "pickle" in str(e) else _one_line(e)  # numpy's guess: a pickle
        raise DataError(f"{path} is not a readable .npz archive ({why}): it may be truncated or not a "
                        f"samples file; {REWRITE}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array, not a .npz with arr_0 (images) and arr_1 (labels): "
                        f"{REWRITE}")
    with data:
        missing = [k for k in ("arr_0", "arr_1") if k not in data.files]
        if missing:
            raise DataError(f"{path} lacks {' and '.join(missing)} (arr_0: images, arr_1: labels; it holds "
                            f"{data.files or 'no arrays'}): {REWRITE}")
        arrays = {}
        for key in ("arr_0", "arr_1"):
            try:
                arrays[key] = data[key]
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise DataError(f"{path}: {key} is an object (pickled) array, which is never loaded: save "
                                    f"plain arrays (uint8 images, integer labels); {REWRITE}") from None
                raise DataError(f"{path}: {key} is unreadable ({_one_line(e)}): the file may be truncated; "
                                f"{REWRITE}") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                raise DataError(f"{path}: {key} is unreadable ({_one_line(e)}): the file may be truncated; "
                                f"{REWRITE}") from None
    images, labels = arrays["arr_0"], arrays["arr_1"]
    if images.dtype != np.uint8:
        raise DataError(f"{path}: arr_0 (images) is {images.dtype}; it must be uint8 pixels 0..255 as "
                        f"`elt sample` writes: convert with np.clip(x, 0, 255).astype(np.uint8)")
    if images.ndim == 3:  # N×H×W grey
        images = images[..., None]
    elif images.ndim == 4 and images.shape[-1] not in (1, 3) and images.shape[1] in (1, 3):  # N×C×H×W
        images = images.transpose(0, 2, 3, 1)
    if images.ndim == 5 and images.shape[-1] not in (1, 3):
        raise DataError(f"{path}: arr_0 has shape {images.shape}; clips must be N×T×H×W×C with C 1 or 3: {REWRITE}")
    if images.ndim not in (4, 5):
        raise DataError(f"{path}: arr_0 (images) has shape {images.shape}; it must be N×H×W×C (images) or "
                        f"N×T×H×W×C (clips): {REWRITE}")
    check_labels(labels, len(images), f"{path}: ")
    if len(images) == 0:
        raise DataError(f"{path} holds no samples (arr_0 is empty): write some with `elt sample RUN_DIR "
                        f"--per-class K --out FILE.npz`")
    return np.ascontiguousarray(images), labels.astype(np.int64)


def check_labels(labels, n: int, where: str = "") -> None:
    """Labels must be n integer class ids in a 1-d array."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"{where}arr_1 (labels) has shape {labels.shape}; it must hold one class id per image, "
                        f"shape ({n},)")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{where}arr_1 (labels) is {labels.dtype}; it must hold integer class ids as `elt sample` "
                        f"writes (no truncation is guessed): save whole-number labels with labels.astype(np.int64)")
    if len(labels) != n:
        raise DataError(f"{where}arr_0 holds {n} images but arr_1 {len(labels)} labels: there must be one label "
                        f"per image; {REWRITE}")


def check_label_range(labels, num_classes: int, where: str = "") -> None:
    """Every label must be one of the classifier's classes (else it would count as a miss)."""
    labels = np.asarray(labels)
    bad = sorted({int(y) for y in labels[(labels < 0) | (labels >= num_classes)]})
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise DataError(f"{where}labels {shown} are outside the classifier's classes 0..{num_classes - 1}: "
                        f"score the samples with a classifier trained on their data set "
                        f"(`elt eval train-classifier DATA --out CLS_DIR`)")
