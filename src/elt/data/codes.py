"""Pre-computed codes of a data set (VQ tokens or continuous latents) in a memory-mapped folder.

A code folder holds

    codes.npy    (N, *code_shape)  integer tokens or float latents, read memory-mapped
    labels.npy   (N,)              int64 class labels
    meta.json    {"format": "elt-codes", "version": 1, "kind": "tokens" | "latents" | "moments",
                  "shape": [N, ...], "dtype": "int16", "source": <hash of the media>, "codec": <what made the
                  codes>, "class_names": [...], "codebook_size": K (tokens), "stats": {...} (latents, moments),
                  "vae": {...} (moments)}

Latents are stored as the model takes them (already scaled by the codec that made them); `stats` (per-channel
mean and std over items and positions, global min and max) is recorded to check that scaling. Moments are a
VAE's posterior, cat(mean, std) over channels, unscaled (`elt data latents`): the model takes
z = (mean + std·ε)·vae.scaling_factor with a fresh ε at every training step; `vae` records which VAE
(data.vae.VaeInfo), so samples can be decoded with it. A folder is
written in a staged temporary folder and renamed into place, so a reader never sees half of one.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import staged_dir
from .dataset import DataError, ImageDataset, as_index

FORMAT, VERSION = "elt-codes", 1
META_FILE, CODES_FILE, LABELS_FILE = "meta.json", "codes.npy", "labels.npy"
KIND_DTYPES = {"tokens": ("uint8", "int16", "int32", "int64"), "latents": ("float16", "float32"),
               "moments": ("float16", "float32")}
STATS_CHUNK = 4096  # items per pass when computing latent stats


@dataclass(frozen=True)
class CodeMeta:
    """What meta.json records about a code folder."""

    kind: str  # "tokens" (discrete) | "latents" (continuous) | "moments" (a VAE posterior: mean and std)
    shape: tuple[int, ...]  # (N, *code_shape)
    dtype: str  # numpy dtype name of codes.npy
    source: str  # hash of the media the codes were made from
    codec: str  # which codec made them
    class_names: tuple[str, ...]
    codebook_size: int | None = None  # tokens only: values lie in 0..codebook_size-1
    stats: dict | None = None  # latents only: {"mean": [C], "std": [C], "min": x, "max": x}
    vae: dict | None = None  # moments only: the VAE that made them (data.vae.VaeInfo.to_dict())

    @property
    def code_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def to_json(self) -> str:
        record = {"format": FORMAT, "version": VERSION, **asdict(self)}
        record["shape"], record["class_names"] = list(self.shape), list(self.class_names)
        return json.dumps(record, indent=2) + "\n"


def latent_stats(codes: np.ndarray) -> dict:
    """Per-channel (axis 1) mean and std over items and positions, and the global min and max, of float codes
    (N, C, *S); computed in float64, chunk by chunk (codes may be memory-mapped)."""
    n, c = codes.shape[0], codes.shape[1]
    total, total_sq, count = np.zeros(c), np.zeros(c), 0
    lo, hi = np.inf, -np.inf
    for s in range(0, n, STATS_CHUNK):
        x = np.asarray(codes[s:s + STATS_CHUNK], dtype=np.float64)
        x = np.moveaxis(x, 1, 0).reshape(c, -1)  # (C, items·positions)
        total += x.sum(1)
        total_sq += (x * x).sum(1)
        count += x.shape[1]
        lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean * mean, 0.0))
    return {"mean": mean.tolist(), "std": std.tolist(), "min": lo, "max": hi}


def write_codes(folder: str | os.PathLike[str], codes: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                class_names: Sequence[str], kind: str, source: str, codec: str,
                codebook_size: int | None = None) -> Path:
    """Write a code folder atomically (replacing an existing one). `codes` (N, *code_shape): integer tokens
    (kind "tokens", with `codebook_size`) or float latents (kind "latents", stats computed here)."""
    codes = codes.numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    labels = (labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)).astype(np.int64)
    stats = latent_stats(codes) if kind == "latents" and codes.ndim >= 2 else None
    meta = CodeMeta(kind, tuple(int(v) for v in codes.shape), codes.dtype.name, str(source), str(codec),
                    tuple(str(c) for c in class_names), codebook_size if kind == "tokens" else None, stats)
    _check_meta(meta, Path(folder) / META_FILE)
    _check_arrays(meta, codes, labels, Path(folder))
    with staged_dir(folder) as tmp:
        np.save(tmp / CODES_FILE, np.ascontiguousarray(codes))
        np.save(tmp / LABELS_FILE, labels)
        (tmp / META_FILE).write_text(meta.to_json())
    return Path(folder)


# ---- reading ---------------------------------------------------------------------------------------------
def is_code_folder(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / META_FILE).is_file()


def read_meta(folder: str | os.PathLike[str]) -> CodeMeta:
    """The checked meta.json of a code folder; DataError saying what is wrong otherwise."""
    path = Path(folder) / META_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} ({' '.join(str(e).split())}): write the code folder again") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataError(f"{path} is not a code folder's meta.json (no \"format\": \"{FORMAT}\"): write the code "
                        f"folder again")
    if record.get("version") != VERSION:
        raise DataError(f"{path} has version {record.get('version')!r}, this elt reads version {VERSION}: write the "
                        f"code folder again")
    fields = {"kind", "shape", "dtype", "source", "codec", "class_names", "codebook_size", "stats", "vae"}
    missing = sorted({"kind", "shape", "dtype", "source", "codec", "class_names"} - set(record))
    unknown = sorted(set(record) - fields - {"format", "version"})
    if missing or unknown:
        what = "; ".join(s for s in (f"lacks {missing}" if missing else "",
                                     f"has unknown keys {unknown}" if unknown else "") if s)
        raise DataError(f"{path} {what}: write the code folder again")
    shape, names = record["shape"], record["class_names"]
    if not isinstance(shape, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape):
        raise DataError(f"{path}: \"shape\" must be a list of integers (N, *code_shape), got {shape!r}")
    if not isinstance(names, list) or not all(isinstance(v, str) for v in names):
        raise DataError(f"{path}: \"class_names\" must be a list of strings, got {names!r}")
    for key in ("source", "codec"):
        if not isinstance(record[key], str):
            raise DataError(f"{path}: \"{key}\" must be a string, got {record[key]!r}")
    if not isinstance(record.get("stats"), (dict, type(None))):
        raise DataError(f"{path}: \"stats\" must be an object (per-channel mean/std, min, max) or null, got "
                        f"{record['stats']!r}")
    meta = CodeMeta(record["kind"], tuple(shape), record["dtype"], record["source"], record["codec"], tuple(names),
                    record.get("codebook_size"), record.get("stats"), record.get("vae"))
    _check_meta(meta, path)
    return meta


def _check_meta(meta: CodeMeta, path: Path) -> None:
    if meta.kind not in KIND_DTYPES:
        raise DataError(f"{path}: \"kind\" must be one of {', '.join(KIND_DTYPES)}, got {meta.kind!r}")
    if meta.dtype not in KIND_DTYPES[meta.kind]:
        raise DataError(f"{path}: {meta.kind} codes must have dtype {' or '.join(KIND_DTYPES[meta.kind])}, "
                        f"got {meta.dtype!r}")
    if len(meta.shape) < 2 or any(v < 1 for v in meta.shape):
        raise DataError(f"{path}: \"shape\" must be (N, *code_shape) with N and every side >= 1, got "
                        f"{list(meta.shape)}")
    if not meta.class_names:
        raise DataError(f"{path}: \"class_names\" is empty: a code folder needs at least one class")
    if meta.kind == "tokens":
        k = meta.codebook_size
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise DataError(f"{path}: token codes need \"codebook_size\" (an integer >= 1), got {k!r}")
    elif meta.codebook_size is not None:
        raise DataError(f"{path}: latent codes have no \"codebook_size\" (got {meta.codebook_size!r}): remove it")
    if meta.kind == "moments":
        vae = meta.vae
        scale = vae.get("scaling_factor") if isinstance(vae, dict) else None
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
            raise DataError(f"{path}: moments need \"vae\" with its \"scaling_factor\" (a number > 0), got "
                            f"{vae!r}: write the latents again with `elt data latents`")
        if meta.shape[1] % 2:
            raise DataError(f"{path}: moments hold cat(mean, std), an even number of channels, got {meta.shape[1]}")
    elif meta.vae is not None:
        raise DataError(f"{path}: only moments record a \"vae\": remove it")


def _check_arrays(meta: CodeMeta, codes: np.ndarray, labels: np.ndarray, folder: Path) -> None:
    """codes.npy and labels.npy must agree with meta.json; tokens must lie in the codebook."""
    if tuple(codes.shape) != meta.shape or codes.dtype.name != meta.dtype:
        raise DataError(f"{folder / CODES_FILE} holds {codes.dtype.name} {tuple(codes.shape)} but meta.json says "
                        f"{meta.dtype} {meta.shape}: write the code folder again")
    if labels.shape != (meta.shape[0],) or labels.dtype.kind not in "iu":
        raise DataError(f"{folder / LABELS_FILE} must hold {meta.shape[0]} integer labels, got {labels.dtype.name} "
                        f"{tuple(labels.shape)}: write the code folder again")
    if labels.size and (labels.min() < 0 or labels.max() >= len(meta.class_names)):
        raise DataError(f"{folder / LABELS_FILE} has labels outside 0..{len(meta.class_names) - 1} (the classes in "
                        f"meta.json): write the code folder again")
    if meta.kind == "tokens" and codes.size and (codes.min() < 0 or codes.max() >= meta.codebook_size):
        raise DataError(f"{folder / CODES_FILE} has tokens outside 0..{meta.codebook_size - 1} (codebook_size in "
                        f"meta.json): write the code folder again")


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read {path} ({' '.join(str(e).split())}): write the code folder again") from None


class CodeDataset(ImageDataset):
    """A code folder as a data set: `get_batch` -> codes (int64 tokens or float32 latents) and int64 labels.

    `image_shape` is the code shape (the shape of one model input), the name the trainer reads; codes stay
    memory-mapped, only the requested rows are read."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        if not is_code_folder(self.folder):
            raise DataError(f"{self.folder} is not a code folder (no {META_FILE})")
        self.meta = read_meta(self.folder)
        self.codes = _load_array(self.folder / CODES_FILE, mmap=True)  # (N, *code_shape), memory-mapped
        labels = _load_array(self.folder / LABELS_FILE, mmap=False)
        _check_arrays(self.meta, self.codes, labels, self.folder)
        self.labels = torch.from_numpy(labels.astype(np.int64))  # (N,)
        self.class_names = list(self.meta.class_names)
        self.num_classes = len(self.class_names)
        self.code_shape = self.meta.code_shape
        c, *spatial = self.code_shape  # moments: cat(mean, std), the model sees one of the halves
        self.image_shape = (c // 2, *spatial) if self.kind == "moments" else self.code_shape

    @property
    def kind(self) -> str:
        return self.meta.kind

    @property
    def discrete(self) -> bool:
        return self.meta.kind == "tokens"

    def __len__(self) -> int:
        return int(self.meta.shape[0])

    def get_batch(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (B, *code_shape) (int64 tokens or float32 latents) and labels int64 (B,)."""
        idx = as_index(indices, len(self))
        rows = torch.from_numpy(np.asarray(self.codes[idx.numpy()]))
        return (rows.long() if self.discrete else rows.float()), self.labels[idx]

    def all_codes(self) -> torch.Tensor:
        """Every item's codes, (N, *code_shape), read into memory (int64 tokens or float32 latents)."""
        return self.get_batch(torch.arange(len(self)))[0]

    def model_inputs(self, codes: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Codes from get_batch -> what the model takes: latents as they are stored, tokens as int64; moments
        (B, 2C, ...) -> a posterior sample (mean + std·noise)·scaling_factor (B, C, ...) (noise None: the mean)."""
        if self.discrete:
            return codes.long()
        if self.kind != "moments":
            return codes.float()
        mean, std = codes.float().chunk(2, dim=1)
        z = mean if noise is None else mean + std * noise.to(mean.device, mean.dtype)
        return z * float(self.meta.vae["scaling_factor"])

    def __repr__(self) -> str:
        return (f"CodeDataset({self.folder}, kind={self.kind}, n={len(self)}, classes={self.num_classes}, "
                f"code_shape={self.code_shape})")
