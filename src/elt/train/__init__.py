"""Training of both families: ILSD / vanilla / baseline from one code path, DDP-ready, exact resume.

    trainer   the Trainer (model, EMA, optimizer, data) and `train(cfg, run_dir)`
    step      the step plan, the shared loss composition, autocast, gradient clipping, the step guard
    loop      fit: logging, checkpoints and sample grids on their cadence, the stop-signal handler
    parallel  the parallel strategy (DDP): wrapping, full state dicts, rank slices, barriers, mean over ranks
    state     checkpoint save / resume with its compatibility check, log truncation, the run lock
    optim     AdamW and its parameter groups
    data      prefetch of the next batch on a background thread
    schedule  data order and learning rate, shared with the tokenizer trainer
    logs      log.jsonl and TensorBoard

Names are imported on first use, so `elt.train.schedule` can be imported without the trainer's dependencies.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Trainer": "trainer", "train": "trainer",
    "TrainingError": "step", "StepResult": "step", "StepPlan": "step", "plan_step": "step", "compute_loss": "step",
    "batch_indices": "schedule", "learning_rate": "schedule",
    "config_changes": "state", "FREE_TO_CHANGE": "state", "RunLock": "state",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
