"""`elt tokenizer train CONFIG [key=value ...] [--out TOK_DIR]` and `elt tokenizer eval TOK_DIR`."""
from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import ConfigError

NO_SECTION = ("this config has no `tokenizer:` section: add one (see configs/mnist_masked.yaml) to train a "
              "tokenizer")


def _config_errors(fn):
    """Report tokenizer problems the way `elt` reports config problems (one line, exit status 2)."""

    @functools.wraps(fn)
    def wrapper(args):
        try:
            return fn(args)
        except ConfigError:
            raise
        except ValueError as e:  # TokenizerError and invalid tokenizer settings
            raise ConfigError(str(e)) from None

    return wrapper


def describe(metrics: dict) -> str:
    """One line: PSNR and codebook usage."""
    return (f"PSNR {metrics['psnr']:.2f} dB on {metrics.get('data', '?')}/{metrics.get('split', '?')} "
            f"({metrics['images']} images); codebook: {metrics['codes_used']}/{metrics['codebook_size']} codes used "
            f"({100 * metrics['usage']:.1f}%), {metrics['dead_codes']} dead, perplexity {metrics['perplexity']:.1f}")


def train_from_config(cfg, out: str | None = None, force: bool = False, progress: bool = True) -> dict:
    """Train the tokenizer described by a Config (`cfg.tokenizer`, `cfg.data`) into `out` (default
    cfg.tokenizer.path)."""
    from .train import train_tokenizer

    tcfg = getattr(cfg, "tokenizer", None)
    if tcfg is None:
        raise ValueError(NO_SECTION)
    train_cfg = getattr(cfg, "train", None)
    device = getattr(train_cfg, "device", "auto")
    out_dir = Path(out or tcfg.path)
    metrics = train_tokenizer(tcfg, cfg.data.name, out_dir, image_size=cfg.data.image_size,
                              channels=cfg.data.channels, progress=progress, overwrite=force, device=device,
                              data_options=cfg.data_options)
    print(f"tokenizer written to {out_dir} in {metrics['train_minutes']:.1f} min ({metrics['steps']} steps, "
          f"stopped by {metrics['stop']})")
    print(describe(metrics))
    return metrics


def _gives_tokenizer(config: str, overrides: list[str]) -> bool:
    """Whether the YAML file (or a tokenizer.* override) sets the tokenizer: a Config always has one, filled
    with defaults, so the raw file is read."""
    from ..config import parse_yaml

    raw = parse_yaml(Path(config).read_text(), f"config file {config}")
    return (isinstance(raw, dict) and "tokenizer" in raw) or any(o.startswith("tokenizer.") for o in overrides)


@_config_errors
def cmd_tokenizer_train(args) -> None:
    from ..config import load_config

    cfg = load_config(args.config, args.overrides)
    if not _gives_tokenizer(args.config, args.overrides):
        raise ValueError(f"{args.config}: {NO_SECTION}")
    train_from_config(cfg, args.out, force=args.force, progress=not args.no_progress)


def evaluate_dir(tok_path: str, data: str | None = None, split: str = "test", batch_size: int = 500,
                 progress: bool = True) -> dict:
    """Load a tokenizer, evaluate it on a split of `data` (default: the data it was trained on, else mnist)."""
    from ..data import load_dataset
    from .evaluate import evaluate_tokenizer
    from .pretrained import load_tokenizer, read_record

    tok = load_tokenizer(tok_path)
    saved = read_record(tok_path).get("data", {}) if Path(tok_path).is_dir() else {}
    if data is None:
        data = saved.get("name") or "mnist"
    if len(tok.image_shape) == 4 and data == saved.get("name"):  # clips: the data exactly as it was trained on
        size = {"image_size": saved.get("image_size"), "channels": saved.get("channels"), **saved.get("options", {})}
    else:
        c, *_, h, w = tok.image_shape
        size = {"image_size": h if h == w else None, "channels": c}
    ds = load_dataset(data, split, **size)
    metrics = evaluate_tokenizer(tok, ds, batch_size=batch_size, progress=progress)
    metrics.update({"data": data, "split": split, "tokenizer": str(tok_path)})
    return metrics


@_config_errors
def cmd_tokenizer_eval(args) -> None:
    from ..outputs import output_file

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out:  # before the evaluation, not after it
        output_file("--out", args.out, ".json", example="report.json")
    metrics = evaluate_dir(args.tok_dir, args.data, args.split, args.batch_size, progress=not args.no_progress)
    print(describe(metrics))
    if args.out:
        out = write_text_atomic(args.out, json.dumps(metrics, indent=2) + "\n")
        print(f"report written to {out}")


def add_tokenizer_parser(subparsers) -> argparse.ArgumentParser:
    """Register `tokenizer train` and `tokenizer eval` on the `elt` sub-command parser."""
    p = subparsers.add_parser("tokenizer", help="train or evaluate the VQ tokenizer of the masked family")
    sub = p.add_subparsers(dest="tokenizer_command", required=True)

    t = sub.add_parser("train", help="train a VQ tokenizer from a config's `tokenizer:` and `data:` sections")
    t.add_argument("config", help="YAML config with a `tokenizer:` section")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. tokenizer.steps=500")
    t.add_argument("--out", help="TOK_DIR to write (default: the config's tokenizer.path)")
    t.add_argument("--force", action="store_true", help="replace an existing TOK_DIR (generators trained on it "
                   "become invalid)")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_tokenizer_train)

    e = sub.add_parser("eval", help="reconstruction PSNR and codebook usage of a tokenizer on a data split")
    e.add_argument("tok_dir", help="TOK_DIR written by `elt tokenizer train`, or a TorchScript tokenizer file")
    e.add_argument("--data", help="mnist, digits or an image folder (default: the data it was trained on)")
    e.add_argument("--split", choices=["train", "test"], default="test")
    e.add_argument("--batch-size", type=int, default=500)
    e.add_argument("--out", help="also write the numbers to this JSON file")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_tokenizer_eval)
    return p
