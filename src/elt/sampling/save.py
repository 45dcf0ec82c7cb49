"""Writing a sample set: `OUT.npz` (arr_0 uint8 images (N, H, W, C), arr_1 int64 labels (N,)) and beside it the
sidecar `OUT.json`, a record of the request (run, checkpoint step, loops, the unconditional
branch's loops, the latents per group of both branches, steps, guidance, seed, labels, precision), the wall time and the counted GFLOPs per sample."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path, write_text_atomic
from ..budget import Budget


def sidecar_path(npz: str | Path) -> Path:
    """The record written beside a sample file: OUT.npz -> OUT.json."""
    return Path(npz).with_suffix(".json")


def save_npz(path: str | Path, images: torch.Tensor, labels: torch.Tensor) -> Path:
    """Atomically write uint8 images (N, H, W, C) and labels (N,) as arr_0 / arr_1 (the ADM evaluation layout)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no second suffix
        np.savez(f, arr_0=images.numpy(), arr_1=labels.numpy())
    return Path(path)


def labels_summary(labels: torch.Tensor) -> dict:
    """{"n", "classes": sorted distinct labels, "per_class": count if every class has the same, else None}."""
    counts = Counter(int(y) for y in labels.tolist())
    same = len(set(counts.values())) == 1
    return {"n": int(len(labels)), "classes": sorted(counts), "per_class": next(iter(counts.values())) if same
            and counts else None}


def gflops_for_request(model: torch.nn.Module, loops: int | Budget | list[int | Budget], steps: int,
                       guidance: float, uncond: int | Budget | None = None) -> float:
    """Counted forward GFLOPs per sample: one loop count or Budget for every step, or one per step (a
    schedule); `uncond` the budget of guidance's unconditional branch (None: as the conditional one)."""
    from ..anytime import gflops_per_sample

    if isinstance(loops, (int, Budget)):
        return gflops_per_sample(model, loops, steps, guidance, uncond)
    per_budget = {L: gflops_per_sample(model, L, 1, guidance, uncond) for L in dict.fromkeys(loops)}
    return sum(per_budget[L] for L in loops)


def write_sidecar(npz: str | Path, record: dict) -> Path:
    """Atomically write `record` as JSON beside the sample file; returns its path."""
    return write_text_atomic(sidecar_path(npz), json.dumps(record, indent=2) + "\n")


def sample_record(run_dir: str, step: int | None, loops: int | list[int], steps: int, guidance: float, seed: int,
                  labels: torch.Tensor, precision: str, batch_size: int | None, wall_seconds: float,
                  gflops_per_sample: float, uncond_loops: int | None = None,
                  latents: int | list[int] | None = None, uncond_latents: int | None = None,
                  guidance_kind: str | None = None) -> dict:
    """The sidecar's contents: what was asked, how long it took and what it cost. `uncond_loops`: the loop
    count of guidance's guiding branch (None: as `loops`); `latents` / `uncond_latents`: the latents per
    group of the two branches (None: the model's full budget / as `latents`; one per step for a schedule);
    `guidance_kind`: none | cfg | ccfg | autoguidance."""
    return {"run": str(run_dir), "checkpoint_step": step, "loops": loops, "uncond_loops": uncond_loops,
            "latents": latents, "uncond_latents": uncond_latents,
            "steps": steps, "cfg": guidance, "guidance": guidance_kind,
            "seed": seed, "labels": labels_summary(labels), "precision": precision, "batch_size": batch_size,
            "wall_seconds": round(wall_seconds, 3), "gflops_per_sample": gflops_per_sample}
