"""Token grids of a whole data set, encoded once and cached on disk as .npy (int16).

The file name holds the caller's key, the tokenizer's weight fingerprint and a hash of the data set's
images, so a retrained tokenizer or changed data never reuses a stale cache.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import save_npy_atomic
from .evaluate import to_unit
from .pretrained import tokenizer_fingerprint

HASH_CHUNK = 4096


def dataset_hash(dataset) -> str:
    """sha1 of the data set's shape and every image's bytes (in index order)."""
    n = len(dataset)
    h = hashlib.sha1(f"{n}|{tuple(dataset.image_shape)}|".encode())
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.shape[0] == n:
        h.update(images.contiguous().numpy().tobytes())
        return h.hexdigest()
    for s in range(0, n, HASH_CHUNK):
        batch, _ = dataset.get_batch(torch.arange(s, min(n, s + HASH_CHUNK)))
        h.update(batch.contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_path(tok, dataset, cache_dir: str | os.PathLike[str], key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._") or "tokens"
    name = f"{safe[:80]}-tok{tokenizer_fingerprint(tok)[:12]}-data{dataset_hash(dataset)[:12]}.npy"
    return Path(cache_dir).expanduser() / name


def _load_valid(path: Path, shape: tuple[int, int, int], vocab: int) -> torch.Tensor | None:
    """The cached grids if the file is readable and plausible, else None (it will be rewritten)."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.shape != shape or arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() >= vocab)):
        return None
    return torch.from_numpy(arr.astype(np.int64))


@torch.no_grad()
def encode_dataset(tok, dataset, batch_size: int = 500, progress: bool = True, desc: str = "tokenize") -> torch.Tensor:
    """Every image of `dataset` -> int64 (N, h, w) on the CPU, in index order."""
    if tuple(dataset.image_shape) != tuple(tok.image_shape):
        raise ValueError(f"the data set's images are {tuple(dataset.image_shape)} but the tokenizer reads "
                         f"{tuple(tok.image_shape)}: resize the data (image_size/channels) to match")
    n = len(dataset)
    out = torch.empty((n, *tok.token_grid), dtype=torch.long)
    with tqdm(total=n, disable=not progress, desc=desc, unit="img", leave=False) as bar:
        for s in range(0, n, batch_size):
            images, _ = dataset.get_batch(torch.arange(s, min(n, s + batch_size)))
            out[s:s + len(images)] = tok.encode(to_unit(images)).cpu()
            bar.update(len(images))
    return out


def token_grids(tok, dataset, cache_dir: str | os.PathLike[str], key: str, batch_size: int = 500,
                progress: bool = True) -> torch.Tensor:
    """int64 (N, h, w) token grids of `dataset`, read from the cache or encoded once and cached."""
    path = cache_path(tok, dataset, cache_dir, key)
    shape = (len(dataset), *tok.token_grid)
    cached = _load_valid(path, shape, tok.codebook_size)
    if cached is not None:
        return cached
    grids = encode_dataset(tok, dataset, batch_size, progress, desc=f"tokenize {key}")
    dtype = np.int16 if tok.codebook_size <= np.iinfo(np.int16).max + 1 else np.int32
    save_npy_atomic(path, grids.numpy().astype(dtype))
    return grids
