"""Token grids of a whole data set, encoded once and cached on disk as a code folder (`elt.data.codes`).

The folder name holds the caller's key, the tokenizer's weight fingerprint and a hash of the data set's
images, so a retrained tokenizer or changed data never reuses a stale cache; a cache whose labels differ
from the data set's, or that does not read back, is encoded again.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..codecs.pixel import to_unit
from ..data.codes import CodeDataset, write_codes
from ..data.dataset import DataError
from ..hashing import dataset_hash, state_dict_sha1
from .evaluate import check_data_fits

__all__ = ["cache_path", "dataset_hash", "encode_dataset", "token_codes", "token_grids"]


def _cache_name(key: str, tok_sha1: str, data_sha1: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._") or "tokens"
    return f"{safe[:80]}-tok{tok_sha1[:12]}-data{data_sha1[:12]}"


def cache_path(tok, dataset, cache_dir: str | os.PathLike[str], key: str) -> Path:
    """The code folder that caches `tok`'s tokens of `dataset` under `key`."""
    return Path(cache_dir).expanduser() / _cache_name(key, state_dict_sha1(tok), dataset_hash(dataset))


def _load_valid(folder: Path, tok, dataset) -> CodeDataset | None:
    """The cached codes if the folder reads back and fits the tokenizer and the data set, else None."""
    try:
        codes = CodeDataset(folder)
    except DataError:
        return None
    fits = (codes.kind == "tokens" and codes.meta.shape == (len(dataset), *tok.token_grid)
            and codes.meta.codebook_size == tok.codebook_size and torch.equal(codes.labels, dataset.labels.long()))
    return codes if fits else None


@torch.no_grad()
def encode_dataset(tok, dataset, batch_size: int = 500, progress: bool = True, desc: str = "tokenize") -> torch.Tensor:
    """Every image of `dataset` -> int64 (N, h, w) on the CPU, in index order."""
    check_data_fits(tok, dataset)
    n = len(dataset)
    out = torch.empty((n, *tok.token_grid), dtype=torch.long)
    with tqdm(total=n, disable=not progress, desc=desc, unit="img", leave=False) as bar:
        for s in range(0, n, batch_size):
            images, _ = dataset.get_batch(torch.arange(s, min(n, s + batch_size)))
            out[s:s + len(images)] = tok.encode_unit(to_unit(images)).cpu()
            bar.update(len(images))
    return out


def token_codes(tok, dataset, cache_dir: str | os.PathLike[str], key: str, batch_size: int = 500,
                progress: bool = True) -> CodeDataset:
    """`dataset`'s token grids as a code folder under `cache_dir`, read from the cache or encoded once."""
    tok_sha1, data_sha1 = state_dict_sha1(tok), dataset_hash(dataset)
    folder = Path(cache_dir).expanduser() / _cache_name(key, tok_sha1, data_sha1)
    cached = _load_valid(folder, tok, dataset)
    if cached is not None:
        return cached
    grids = encode_dataset(tok, dataset, batch_size, progress, desc=f"tokenize {key}")
    dtype = np.int16 if tok.codebook_size <= np.iinfo(np.int16).max + 1 else np.int32
    write_codes(folder, grids.numpy().astype(dtype), dataset.labels, dataset.class_names, kind="tokens",
                source=data_sha1, codec=f"vq-tokenizer:{tok_sha1}", codebook_size=tok.codebook_size)
    return CodeDataset(folder)


def token_grids(tok, dataset, cache_dir: str | os.PathLike[str], key: str, batch_size: int = 500,
                progress: bool = True) -> torch.Tensor:
    """int64 (N, h, w) token grids of `dataset`, read from the cache or encoded once and cached."""
    return token_codes(tok, dataset, cache_dir, key, batch_size, progress).all_codes()
