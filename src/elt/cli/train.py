"""`elt train CONFIG [key=value ...] --out RUN_DIR [--model SIZE] [--resume [--allow-changes]]`."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from ..models.registry import MODEL_SIZES, size_overrides


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", help="YAML config, e.g. configs/mnist_flow.yaml")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=1e-4")
    t.add_argument("--out", required=True, help="run folder (checkpoints, samples, log)")
    t.add_argument("--model", choices=list(MODEL_SIZES), metavar="SIZE",
                   help="a named model size: its model keys and train.loops replace the config file's (key=value "
                        "overrides still win): "
                        + ", ".join(MODEL_SIZES))
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--allow-changes", action="store_true", help="with --resume: accept a config that differs "
                   "from the checkpoint's in non-architecture settings (lr, steps, batch, data ...); the changes "
                   "are logged, and the continuation is no longer bit-for-bit")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=run)


def run(args) -> None:
    from ..checkpoint import has_checkpoint
    from ..config import load_config
    from ..train import train

    size = size_overrides(args.model) if args.model else []
    cfg = load_config(args.config, size + list(args.overrides))
    if not args.out.strip():
        raise ConfigError("--out is empty: name the run folder, e.g. --out runs/my_run")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: pass a folder for the run (it is created if missing)")
    data = Path(cfg.data.name).expanduser()
    if data.is_dir() and (out.resolve() == data.resolve() or data.resolve() in out.resolve().parents):
        raise ConfigError(f"--out {out} lies inside the data folder {data}: the run's files would become part of "
                          f"the data set; choose a folder outside it")
    if args.allow_changes and not args.resume:
        raise ConfigError("--allow-changes only applies with --resume")
    if has_checkpoint(out) and not args.resume:
        raise CheckpointError(f"{out} already holds a trained run: pass --resume to continue it, "
                              f"or choose a new --out folder")
    summary = train(cfg, out, resume=args.resume, progress=not args.no_progress, allow_changes=args.allow_changes)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({k: summary[k] for k in ("step", "stop", "elapsed_min", "loss") if k in summary}))
