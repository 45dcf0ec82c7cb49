"""A run folder's training state: checkpoint save, resume (with its compatibility check), log truncation and
the run lock that keeps two trainers out of one folder."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..atomic import write_text_atomic
from ..checkpoint import (CheckpointError, find_checkpoint, load_config_from, load_ema_weights, load_train_state,
                          save_checkpoint)
from ..config import Config

# settings a resumed run may change without breaking exact continuation (bookkeeping, budget, placement)
FREE_TO_CHANGE = {"train.max_minutes", "train.log_every", "train.ckpt_every", "train.sample_every",
                  "train.keep_checkpoints", "train.device", "train.compile", "train.tensorboard", "train.parallel",
                  "train.checkpoint_activations"}


def config_changes(saved: Config, new: Config) -> dict[str, tuple]:
    """{"section.key": (saved, new)} for every setting that differs and would change the continuation.
    The tokenizer section is ignored: a run uses its own copy of the tokenizer."""
    a, b = saved.to_dict(), new.to_dict()
    out = {}
    for section in ("data", "train", "sample"):
        for key in set(a.get(section, {})) | set(b.get(section, {})):
            va, vb = a.get(section, {}).get(key), b.get(section, {}).get(key)
            if va != vb and f"{section}.{key}" not in FREE_TO_CHANGE:
                out[f"{section}.{key}"] = (va, vb)
    return dict(sorted(out.items()))


def save_state(run_dir: Path, cfg: Config, step: int, elapsed: float, model_state: dict, optimizer_state: dict,
               ema_state: dict) -> Path:
    """One checkpoint: EMA weights (model.safetensors) and raw weights + optimizer + counters (state.pt)."""
    state = {"model": model_state, "optimizer": optimizer_state, "step": step, "elapsed": elapsed}
    return save_checkpoint(run_dir, step, cfg, ema_state, state, keep=cfg.train.keep_checkpoints)


def load_resumable(run_dir: Path, cfg: Config, allow_changes: bool) -> tuple[Path, dict, dict, dict]:
    """The newest intact checkpoint of `run_dir`, if `cfg` may continue it exactly
    -> (checkpoint folder, train state {model, optimizer, step, elapsed}, EMA weights, changed settings)."""
    try:
        ckpt = find_checkpoint(run_dir, need_state=True)
    except CheckpointError as e:
        raise CheckpointError(f"cannot resume: {e}") from None
    saved = load_config_from(ckpt)
    same = (saved.model, saved.objective, saved.train.mode, saved.train.loops, saved.train.seed) == \
        (cfg.model, cfg.objective, cfg.train.mode, cfg.train.loops, cfg.train.seed)
    if not same:
        raise CheckpointError(f"cannot resume {ckpt}: it was trained with another architecture, objective, "
                              f"mode, loop count or seed; "
                              f"resume with the config saved in {ckpt / 'config.yaml'} or use a new --out folder")
    changed = config_changes(saved, cfg)
    if changed and not allow_changes:
        listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise CheckpointError(f"cannot resume {ckpt} exactly: the config differs ({listed}); resume with the "
                              f"saved config, or pass --allow-changes to continue with the new values")
    return ckpt, load_train_state(ckpt), load_ema_weights(ckpt), changed


def note_resume(run_dir: Path, step: int, changed: dict) -> None:
    """Drop the log rows a resumed run trains again; record and announce changed settings (main rank)."""
    log = run_dir / "log.jsonl"
    truncate_log(log, step)
    if changed:
        with open(log, "a") as f:
            f.write(json.dumps({"event": "resume_with_changes", "step": step,
                                "changed": {k: list(v) for k, v in changed.items()}}) + "\n")
        tqdm.write(f"elt: warning: resuming at step {step} with changed settings: " + ", ".join(changed),
                   file=sys.stderr)


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows past `step` (written after the checkpoint that a resumed run continues from)."""
    if not path.is_file():
        return
    lines, keep = path.read_text().splitlines(), []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a row cut short by a kill
        if row.get("step", 0) <= step:
            keep.append(line)
    if keep != lines:
        write_text_atomic(path, "".join(line + "\n" for line in keep))


class RunLock:
    """An exclusive lock on RUN_DIR/.lock for the life of a trainer: a second training into the same
    folder stops with a message instead of overwriting the first one's checkpoints."""

    def __init__(self, run_dir: Path):
        import fcntl

        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / ".lock"
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            owner = self.file.read().strip() or "another process"
            self.file.close()
            raise CheckpointError(f"{run_dir} is being trained by {owner}: wait for it to finish, or choose "
                                  f"another --out folder") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()}")
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            self.file.close()  # closing drops the flock
