"""Atomic checkpoints: RUN_DIR/checkpoints/step_XXXXXXX/{model.safetensors, config.yaml, state.pt}.

A checkpoint folder is written under a temporary name and renamed into place, then the `latest` pointer
file is replaced atomically, so an interrupted save never leaves a half-written checkpoint behind.
`model.safetensors` holds the EMA weights (what samplers use); `state.pt` holds the raw weights, the
optimizer and the step counter needed for an exact resume.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from .atomic import write_text_atomic
from .config import Config, config_from_dict, dump_config


class CheckpointError(RuntimeError):
    """A missing, unreadable or incompatible checkpoint."""


def save_checkpoint(run_dir: str | Path, step: int, cfg: Config, ema_state: dict, train_state: dict,
                    keep: int = 2) -> Path:
    """Write one checkpoint atomically and prune all but the newest `keep`. Returns its folder."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema_state.items()}, str(tmp / "model.safetensors"))
        (tmp / "config.yaml").write_text(dump_config(cfg))
        torch.save(train_state, tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text_atomic(Path(run_dir) / "latest", final.name + "\n")
    done = sorted(p for p in root.iterdir() if p.name.startswith("step_"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path:
    """Resolve a run folder (via its `latest` pointer) or a checkpoint folder to a checkpoint folder."""
    path = Path(path)
    if (path / "model.safetensors").is_file() and (path / "config.yaml").is_file():
        return path
    pointer = path / "latest"
    if pointer.is_file():
        ckpt = path / "checkpoints" / pointer.read_text().strip()
        if (ckpt / "model.safetensors").is_file():
            return ckpt
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: pass a run folder written by `elt train --out`")
    raise CheckpointError(f"no checkpoint found in {path}: it holds no `latest` pointer or model.safetensors; "
                          f"train first with `elt train CONFIG --out {path}`")


def has_checkpoint(run_dir: str | Path) -> bool:
    try:
        find_checkpoint(run_dir)
        return True
    except CheckpointError:
        return False


def load_config_from(ckpt: Path) -> Config:
    return config_from_dict(yaml.safe_load((ckpt / "config.yaml").read_text()))


def state_mismatch(own: dict, state: dict) -> str:
    """'' when `state` fits a module whose state_dict is `own`, else a short list of what does not."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    return "; ".join(f"{name}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
                     for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong))
                     if keys)


def load_weights(model: torch.nn.Module, state: dict, source: str) -> None:
    """load_state_dict(strict) with a message that names the mismatch instead of a wall of keys."""
    detail = state_mismatch(model.state_dict(), state)
    if detail:
        raise CheckpointError(f"checkpoint {source} was written for another architecture ({detail}); "
                              f"load it with the config saved beside it, or start a new run folder")
    model.load_state_dict(state)


def load_ema_weights(ckpt: Path) -> dict:
    return load_file(str(ckpt / "model.safetensors"))


def load_train_state(ckpt: Path) -> dict:
    return torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
