"""`elt` command line: data, train, sample, anytime, eval."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, has_checkpoint
from .config import ConfigError, load_config
from .data import DataError


def _labels(args, num_classes: int) -> torch.Tensor:
    if args.labels:
        bad = [y for y in args.labels if not 0 <= y < num_classes]
        if bad:
            raise ConfigError(f"--labels {bad} outside 0..{num_classes - 1}")
        return torch.tensor(args.labels, dtype=torch.long)
    if args.per_class < 1:
        raise ConfigError(f"--per-class must be >= 1, got {args.per_class}")
    return torch.arange(num_classes).repeat_interleave(args.per_class)


def _at_least_1(flag: str, value: int) -> int:
    if value < 1:
        raise ConfigError(f"{flag} must be >= 1, got {value}")
    return value


def _sampling_settings(args, cfg) -> tuple[int, float]:
    """(steps, cfg scale) from the flags, falling back to the run's `sample` config section."""
    steps = _at_least_1("--steps", cfg.sample.steps if args.steps is None else args.steps)
    return steps, cfg.sample.cfg if args.cfg is None else args.cfg


def cmd_data(args) -> None:
    from .data import fetch_digits, fetch_mnist, load_dataset

    path = fetch_mnist(force=args.force) if args.name == "mnist" else fetch_digits(force=args.force)
    tr, te = load_dataset(args.name, "train"), load_dataset(args.name, "test")
    print(f"{args.name}: {len(tr)} train / {len(te)} test images of shape {tuple(tr.image_shape)}, "
          f"{tr.num_classes} classes, cached at {path}")


def cmd_train(args) -> None:
    from .train import train

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out)
    if has_checkpoint(out) and not args.resume:
        raise CheckpointError(f"{out} already holds a trained run: pass --resume to continue it, "
                              f"or choose a new --out folder")
    summary = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({k: summary[k] for k in ("step", "stop", "elapsed_min", "loss") if k in summary}))


def _load(run_dir: str):
    from .models import from_pretrained
    from .objectives.flow import build_objective

    model, cfg = from_pretrained(run_dir)
    return model, cfg, build_objective(cfg.objective)


def generate(model, process, labels, loops, steps, guidance, seed, batch_size, precision, desc=None):
    """Sample with a progress bar -> uint8 (N, H, W, C)."""
    from .sampling.flow import sample_images

    with tqdm(total=len(labels), desc=desc or f"sample L={loops}", unit="img", disable=desc == "") as bar:
        return sample_images(model, process, labels, loops, steps, guidance, seed, batch_size, progress=bar,
                             precision=precision)


def cmd_sample(args) -> None:
    from .grid import make_grid, save_png

    model, cfg, process = _load(args.run_dir)
    loops = _at_least_1("--loops", cfg.train_loops if args.loops is None else args.loops)
    _at_least_1("--batch-size", args.batch_size)
    labels = _labels(args, cfg.model.num_classes)
    steps, guidance = _sampling_settings(args, cfg)
    t0 = time.perf_counter()
    images = generate(model, process, labels, loops, steps, guidance, args.seed, args.batch_size, args.precision)
    dt = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, arr_0=images.numpy(), arr_1=labels.numpy())
    print(f"wrote {len(labels)} samples to {out} in {dt:.1f} s (loops={loops}, steps={steps}, cfg={guidance}, "
          f"seed={args.seed})")
    if args.grid:
        k = cfg.model.num_classes
        if not args.labels and args.per_class * k == len(labels):
            cols = min(args.per_class, 16)
            idx = torch.arange(k)[:, None] * args.per_class + torch.arange(cols)[None]
            save_png(make_grid(images[idx.flatten()], k, cols), args.grid, scale=2)
        else:
            cols = min(16, len(labels))
            rows = len(labels) // cols
            save_png(make_grid(images[: rows * cols], rows, cols), args.grid, scale=2)
        print(f"wrote grid {args.grid}")


def cmd_anytime(args) -> None:
    from .grid import make_grid, save_png

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, cfg, process = _load(args.run_dir)
    L_max = cfg.train_loops
    loop_counts = list(range(1, _at_least_1("--max-loops", L_max + 2 if args.max_loops is None else args.max_loops) + 1))
    steps, guidance = _sampling_settings(args, cfg)
    k = cfg.model.num_classes
    # grid: a row per class, a column per loop count (same noise in every column)
    grid_labels = torch.arange(k)
    columns = [generate(model, process, grid_labels, L, steps, guidance, args.seed, 500, args.precision, "")
               for L in tqdm(loop_counts, desc="any-time grid")]
    cells = torch.stack(columns, 1).flatten(0, 1)  # (k·len(loops), H, W, C) row-major
    grid_path = save_png(make_grid(cells, k, len(loop_counts)), out / "anytime.png", scale=3,
                         column_titles=[f"L={L}" for L in loop_counts])
    print(f"wrote {grid_path} (rows: classes 0..{k - 1}; columns: loops {loop_counts}; trained L_max={L_max})")
    if args.classifier:
        from .eval.classifier import class_consistency, load_classifier

        clf = load_classifier(args.classifier)
        labels = torch.arange(k).repeat_interleave(args.per_class)
        rows = []
        for L in loop_counts:
            t0 = time.perf_counter()
            imgs = generate(model, process, labels, L, steps, guidance, args.seed, 500, args.precision)
            dt = time.perf_counter() - t0
            acc = class_consistency(clf, imgs, labels)
            rows.append({"loops": L, "class_consistency": acc["accuracy"], "per_class": acc["per_class"],
                         "sample_seconds": dt})
            print(f"L={L}: class-consistency {acc['accuracy']:.4f} ({len(labels)} samples, {dt:.1f} s)")
        report = {"run": str(args.run_dir), "mode": cfg.train.mode, "trained_loops": L_max, "steps": steps,
                  "cfg": guidance, "seed": args.seed, "samples_per_loop": len(labels),
                  "classifier": str(args.classifier), "results": rows}
        (out / "anytime.json").write_text(json.dumps(report, indent=2))
        print(f"wrote {out / 'anytime.json'}")


def cmd_eval(args) -> None:
    from .eval.classifier import class_consistency, load_classifier

    if args.target == "train-classifier":
        return cmd_train_classifier(args)
    path = Path(args.target)
    if not path.is_file():
        raise DataError(f"{path} does not exist: pass a .npz written by `elt sample`")
    data = np.load(path)
    if "arr_0" not in data or "arr_1" not in data:
        raise DataError(f"{path} lacks arr_0 (images) / arr_1 (labels): write it with `elt sample`")
    if not args.classifier:
        raise ConfigError("pass --classifier CLS_DIR (made by `elt eval train-classifier DATA --out CLS_DIR`)")
    clf = load_classifier(args.classifier)
    report = {"samples": str(path), "n": int(len(data["arr_1"])), "classifier": str(args.classifier)}
    if args.ref:
        from .eval.report import classifier_report

        report.update(classifier_report(clf, data["arr_0"], data["arr_1"], args.ref, seed=args.seed))
        print(json.dumps({"n": report["n"], "class_consistency": report["class_consistency"]["accuracy"],
                          "fd_classifier": report["fd_classifier"],
                          "fd_classifier_real_floor": report["fd_classifier_real_floor"]}))
    else:
        report.update(class_consistency(clf, data["arr_0"], torch.as_tensor(data["arr_1"])))
        print(json.dumps({k: report[k] for k in ("n", "accuracy")}))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


def cmd_train_classifier(args) -> None:
    from .data import load_dataset
    from .eval.classifier import save_classifier, train_classifier

    if not args.data or not args.out:
        raise ConfigError("usage: elt eval train-classifier DATA --out CLS_DIR")
    size = {"image_size": args.image_size, "channels": args.channels}
    tr, te = load_dataset(args.data, "train", **size), load_dataset(args.data, "test", **size)
    xtr, ytr = tr.get_batch(torch.arange(len(tr)))
    xte, yte = te.get_batch(torch.arange(len(te)))
    model, acc = train_classifier(xtr, ytr, xte, yte, epochs=args.epochs, seed=args.seed)
    save_classifier(model, args.out, {"data": args.data, "test_accuracy": acc, "image_shape": list(tr.image_shape)})
    print(f"classifier held-out accuracy {acc:.4f} on {len(te)} test images; saved to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elt", description="Elastic Looped Transformers: train once, sample at any "
                                "loop count.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="fetch and cache a built-in data set")
    d.add_argument("name", choices=["mnist", "digits"])
    d.add_argument("--force", action="store_true", help="fetch again even if cached")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", help="YAML config, e.g. configs/mnist_flow.yaml")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=1e-4")
    t.add_argument("--out", required=True, help="run folder (checkpoints, samples, log)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    def sampling_args(q):
        q.add_argument("run_dir")
        q.add_argument("--steps", type=int, default=None, help="sampling steps (default: the config's)")
        q.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale; 1 = off")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")

    s = sub.add_parser("sample", help="sample a trained run at any loop count -> .npz (arr_0 images, arr_1 labels)")
    sampling_args(s)
    s.add_argument("--loops", type=int, default=None, help="loop count L (default: the trained L_max)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--per-class", type=int, default=10)
    g.add_argument("--labels", type=int, nargs="+")
    s.add_argument("--batch-size", type=int, default=500)
    s.add_argument("--out", required=True, help="FILE.npz")
    s.add_argument("--grid", help="also write a PNG grid")
    s.set_defaults(func=cmd_sample)

    a = sub.add_parser("anytime", help="one grid with a column per loop count (1 … L_max+2), a row per class")
    sampling_args(a)
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--max-loops", type=int, default=None, help="last loop count (default L_max + 2)")
    a.add_argument("--classifier", help="also measure class-consistency per loop count with this classifier")
    a.add_argument("--per-class", type=int, default=100, help="samples per class for --classifier")
    a.set_defaults(func=cmd_anytime)

    e = sub.add_parser("eval", help="`elt eval SAMPLES.npz --classifier DIR` or `elt eval train-classifier DATA --out DIR`")
    e.add_argument("target", help="SAMPLES.npz, or the word train-classifier")
    e.add_argument("data", nargs="?", help="data set for train-classifier (mnist, digits or a folder)")
    e.add_argument("--classifier", help="classifier folder")
    e.add_argument("--ref", help="reference data (mnist, digits or a folder): adds FD in classifier feature "
                   "space and its real-vs-real floor")
    e.add_argument("--out", help="report.json, or the classifier folder for train-classifier")
    e.add_argument("--epochs", type=int, default=12, help="classifier training epochs")
    e.add_argument("--image-size", type=int, help="train-classifier: resize the data to this side (folders)")
    e.add_argument("--channels", type=int, help="train-classifier: 1 (grey) or 3 (RGB)")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `key=value` overrides may also follow the options of `elt train`
        if args.command != "train" or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        args.func(args)
    except (ConfigError, CheckpointError, DataError, FileNotFoundError) as e:
        print(f"elt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("elt: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from .train import TrainingError

        if isinstance(e, TrainingError):
            print(f"elt: error: {e}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
