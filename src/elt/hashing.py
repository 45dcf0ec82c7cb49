"""Content hashes used as cache keys and integrity checks: files, image tensors, data sets, state dicts.

Every cache key in elt comes from here, so two caches can never hash the same content differently.
The outputs are part of on-disk names (feature and token caches): changing any formula here orphans
existing caches.
"""
from __future__ import annotations

import hashlib
import os

import torch

FILE_CHUNK = 1 << 22  # bytes read at a time when hashing a file
DATASET_CHUNK = 4096  # images read at a time when a data set holds no uint8 tensor of all its images


def file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """Hex digest of a file's bytes with hashlib's `algorithm` ("sha1", "sha256", ...)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(FILE_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha1(path: str | os.PathLike[str]) -> str:
    return file_digest(path, "sha1")


def file_sha256(path: str | os.PathLike[str]) -> str:
    return file_digest(path, "sha256")


def images_sha1(images: torch.Tensor) -> str:
    """sha1 of a CPU tensor's shape and bytes (uint8 images (N, C, H, W) in practice)."""
    h = hashlib.sha1(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


def dataset_hash(dataset) -> str:
    """sha1 of a data set's length, item shape and every item's bytes (in index order)."""
    n = len(dataset)
    h = hashlib.sha1(f"{n}|{tuple(dataset.image_shape)}|".encode())
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.shape[0] == n:
        h.update(images.contiguous().numpy().tobytes())
        return h.hexdigest()
    for s in range(0, n, DATASET_CHUNK):
        batch, _ = dataset.get_batch(torch.arange(s, min(n, s + DATASET_CHUNK)))
        h.update(batch.contiguous().numpy().tobytes())
    return h.hexdigest()


def state_dict_sha1(module: torch.nn.Module) -> str:
    """sha1 over a module's state dict (names, dtypes, shapes, bytes): changes whenever the weights change."""
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
