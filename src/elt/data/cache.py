"""Where cached data sets live, and an atomic .npz writer/reader."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from .dataset import DataError

CACHE_ENV = "ELT_CACHE"


def default_cache_dir() -> Path:
    """`$ELT_CACHE` if set (and non-empty), else `~/.cache/elt`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "elt"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    return default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()


def save_npz_atomic(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """np.savez_compressed, atomically: readers never see a half-written cache."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return Path(path)


def load_npz(path: str | os.PathLike[str], required: tuple[str, ...], refetch_hint: str) -> dict[str, np.ndarray]:
    """Load every array of a cache file; DataError if unreadable or keys are missing."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cache file {path} is unreadable ({e}); delete it and {refetch_hint}") from e
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DataError(f"cache file {path} lacks {missing}; delete it and {refetch_hint}")
    return arrays
