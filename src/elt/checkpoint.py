"""Atomic checkpoints: RUN_DIR/checkpoints/step_XXXXXXX/{model.safetensors, config.yaml, state.pt}.

A checkpoint folder is written under a temporary name and renamed into place, then the `latest` pointer
file is replaced atomically, so an interrupted save never leaves a half-written checkpoint behind.
`model.safetensors` holds the EMA weights (what samplers use); `state.pt` holds the raw weights, the
optimizer and the step counter needed for an exact resume.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from .atomic import write_text_atomic
from .config import Config, ConfigError, config_from_dict, dump_config, parse_yaml, read_text
from .weights import load_strict, save_weights, state_mismatch  # noqa: F401  (state_mismatch: old import path)


from .errors import CheckpointError  # noqa: E402  (defined with the project's other errors)


def save_checkpoint(run_dir: str | Path, step: int, cfg: Config, ema_state: dict, train_state: dict,
                    keep: int = 2) -> Path:
    """Write one checkpoint atomically and prune all but the newest `keep`. Returns its folder."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        save_weights(ema_state, tmp / "model.safetensors")
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


def checkpoint_problem(ckpt: Path, need_state: bool = False) -> str | None:
    """None if `ckpt` holds a readable checkpoint (config, EMA weights, and with `need_state` the training
    state), else what is wrong with it. Checks the safetensors header against the file size (a truncated
    file fails) and, with `need_state`, that state.pt is a complete archive."""
    try:
        load_config_from(ckpt)
    except (OSError, CheckpointError, ConfigError) as e:
        return f"config.yaml: {e}"
    weights = ckpt / "model.safetensors"
    try:
        with open(weights, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 0 < n < 100_000_000 else None
        if not isinstance(header, dict):
            return "model.safetensors has no valid header"
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if weights.stat().st_size < 8 + n + end:
            return "model.safetensors is truncated"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"model.safetensors is unreadable ({e.__class__.__name__})"
    if need_state:
        try:
            with zipfile.ZipFile(ckpt / "state.pt") as z:
                if z.testzip() is not None:
                    return "state.pt is corrupt"
        except (OSError, zipfile.BadZipFile):
            return "state.pt is missing or truncated"
    return None


def find_checkpoint(path: str | Path, need_state: bool = False, warn=None) -> Path:
    """Resolve a run folder (via its `latest` pointer) or a checkpoint folder to an intact checkpoint folder.

    When `latest` points at a missing or broken checkpoint, the newest intact `checkpoints/step_*` is used
    and `warn(message)` (default: one `elt: warning:` line on stderr) names the broken one."""
    path = Path(path)
    if (path / "model.safetensors").is_file() and (path / "config.yaml").is_file():
        problem = checkpoint_problem(path, need_state)
        if problem:
            raise CheckpointError(f"checkpoint {path} is damaged ({problem}): use another checkpoint of the run")
        return path
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: pass a run folder written by `elt train --out`")
    root = path / "checkpoints"
    pointer = path / "latest"
    named = root / pointer.read_text().strip() if pointer.is_file() else None
    steps = sorted((p for p in root.glob("step_*") if p.is_dir()), reverse=True) if root.is_dir() else []
    broken = []
    if named is not None and (named.resolve().parent != root.resolve() or not named.name.startswith("step_")):
        broken.append(("latest", f"it names {pointer.read_text().strip()!r}, outside {root}; never followed"))
        named = None
    for ckpt in ([named] if named is not None else []) + [p for p in steps if p != named]:
        problem = checkpoint_problem(ckpt, need_state) if ckpt.is_dir() else "it does not exist"
        if problem is None:
            if broken:
                (warn or _warn)(f"{broken[0][0]} is unusable ({broken[0][1]}): using {ckpt.name}, the newest "
                                f"intact checkpoint of {path}")
            return ckpt
        broken.append((ckpt.name if ckpt.parent == root else str(ckpt), problem))
    if broken:
        raise CheckpointError(f"no intact checkpoint in {path}: " + "; ".join(f"{n}: {p}" for n, p in broken)
                              + f". Start a new run folder, or delete {path} to retrain there")
    raise CheckpointError(f"no checkpoint found in {path}: it holds no `latest` pointer or model.safetensors; "
                          f"train first with `elt train CONFIG --out {path}`")


def _warn(message: str) -> None:
    print(f"elt: warning: {message}", file=sys.stderr)


def has_checkpoint(run_dir: str | Path) -> bool:
    """True when the folder holds any checkpoint, intact or not (so it is never silently overwritten)."""
    run_dir = Path(run_dir)
    if (run_dir / "model.safetensors").is_file() or (run_dir / "latest").is_file():
        return True
    return (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("step_*"))


def load_config_from(ckpt: Path) -> Config:
    text = read_text(ckpt / "config.yaml", f"{ckpt / 'config.yaml'}", CheckpointError)
    raw = parse_yaml(text, f"{ckpt / 'config.yaml'}", CheckpointError)
    try:
        return config_from_dict(raw)
    except ConfigError as e:
        raise CheckpointError(f"{ckpt / 'config.yaml'} is not a valid config ({e})") from None


def load_weights(model: torch.nn.Module, state: dict, source: str, load=None) -> None:
    """load_state_dict(strict) with a message that names the mismatch instead of a wall of keys; `load`: what
    loads the checked state instead (see weights.load_strict)."""
    load_strict(model, state, lambda detail: CheckpointError(
        f"checkpoint {source} was written for another architecture ({detail}); "
        f"load it with the config saved beside it, or start a new run folder"), load)


def load_ema_weights(ckpt: Path) -> dict:
    return load_file(str(ckpt / "model.safetensors"))


def load_train_state(ckpt: Path) -> dict:
    return torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete `checkpoints/.tmp-*` folders that a killed save left behind (call with the run lock held)."""
    root = Path(run_dir) / "checkpoints"
    stale = sorted(root.glob(".tmp-*")) if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale
