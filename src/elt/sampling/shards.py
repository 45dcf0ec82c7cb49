"""Sample sets of any size over any number of processes: `torchrun --nproc_per_node=P -m elt.cli sample ...`.

The set is cut into chunks of `chunk` consecutive sample indices; chunk c is drawn by rank c mod P and written
atomically to `OUT.parts/<first index>.npz`. Every sample's noise is a function of (seed, its index) alone, so a
chunk is the same whichever rank draws it and with however many ranks: after a barrier the main rank merges
the chunks in index order into OUT.npz, which is then identical for 1 and P processes (on CPU; on GPUs up to
kernel nondeterminism). A killed job keeps its finished chunks and a rerun of the same command draws only the
missing ones; `OUT.parts/request.json` names the request, so chunks of another request are never mixed in.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_path, write_text_atomic
from ..errors import ConfigError
from .save import save_npz

REQUEST = "request.json"


def parts_dir(out: Path) -> Path:
    """OUT.npz -> OUT.parts, the folder of finished chunks."""
    return Path(out).with_suffix(".parts")


def chunk_path(parts: Path, start: int) -> Path:
    return parts / f"{start:09d}.npz"


def claim_parts(parts: Path, request: dict) -> None:
    """Create OUT.parts for `request` or check that the one there was made for the same request (main rank)."""
    manifest = parts / REQUEST
    if manifest.is_file():
        try:
            saved = json.loads(manifest.read_text())
        except ValueError:
            saved = None
        if saved != request:
            raise ConfigError(f"{parts} holds chunks of another sampling request (a killed job with other "
                              f"settings): delete that folder, or rerun the command that made it to finish it")
        return
    if parts.exists() and any(parts.iterdir()):
        raise ConfigError(f"{parts} exists and is not a chunk folder of elt sample: move it away or choose "
                          f"another --out")
    parts.mkdir(parents=True, exist_ok=True)
    write_text_atomic(manifest, json.dumps(request, indent=1, sort_keys=True) + "\n")


def draw_chunks(draw: Callable[[torch.Tensor, int], tuple[torch.Tensor, dict]], labels: torch.Tensor, parts: Path,
                chunk: int, rank: int, world: int, progress: bool = True) -> int:
    """Draw this rank's missing chunks: draw(labels of the chunk, first index) -> (uint8 (n, ...) samples, extra
    per-sample arrays to keep, e.g. {"loops": (n, steps)}), each chunk written atomically. Returns the number of
    samples drawn (not counting chunks already there)."""
    starts = list(range(0, len(labels), chunk))[rank::world]
    todo = [s for s in starts if not chunk_path(parts, s).is_file()]
    drawn = 0
    with tqdm(total=sum(min(chunk, len(labels) - s) for s in todo), unit="img", desc=f"sample (rank {rank})",
              disable=not progress or rank != 0) as bar:
        for start in todo:
            y = labels[start:start + chunk]
            images, extra = draw(y, start)
            with atomic_path(chunk_path(parts, start)) as tmp, open(tmp, "wb") as f:
                np.savez(f, arr_0=images.numpy(), arr_1=y.numpy(), **{k: v.numpy() for k, v in extra.items()})
            drawn += len(y)
            bar.update(len(y))
    return drawn


def merge_chunks(parts: Path, labels: torch.Tensor, chunk: int, out: Path) -> tuple[torch.Tensor, dict]:
    """Concatenate the chunks in index order into OUT.npz (arr_0 samples, arr_1 labels), check them against the
    request's labels, remove OUT.parts -> (the samples, the chunks' extra per-sample arrays concatenated)."""
    pieces, extra = [], {}
    for start in range(0, len(labels), chunk):
        path = chunk_path(parts, start)
        if not path.is_file():
            raise ConfigError(f"{path} is missing after every rank finished: rerun the same command to draw it")
        with np.load(path) as z:
            if not np.array_equal(z["arr_1"], labels[start:start + chunk].numpy()):
                raise ConfigError(f"{path} holds other labels than this request's: delete {parts} and rerun")
            pieces.append(torch.from_numpy(z["arr_0"]))
            for key in set(z.files) - {"arr_0", "arr_1"}:
                extra.setdefault(key, []).append(torch.from_numpy(z[key]))
    images = torch.cat(pieces)
    save_npz(out, images, labels)
    shutil.rmtree(parts)
    return images, {k: torch.cat(v) for k, v in extra.items()}
