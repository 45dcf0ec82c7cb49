"""Speed of a change, before vs after, in one process: the training step and the sampling step of the default
configs (configs/mnist_flow.yaml, configs/mnist_masked.yaml), timed alternately for two versions of the library.

Method. Every module of `src/elt` imports its siblings relatively, so an older revision's `src/elt`, taken with
`git archive REV src/elt` into a temporary folder and renamed `elt_before`, imports beside the current `elt` in
the same Python process (the extraction rewrites any absolute `elt` import and stops on a string module path
it cannot rewrite). For each config, each version builds its own public `Trainer` (same config, same seed) on a
temporary run folder and:

  * train:  `trainer.train_step(step)`, the trainer's own step: the step's batch from the data set, forward
            with the ILSD exits, loss, backward, gradient clipping, AdamW and the EMA update;
  * sample: the family's public sampler on the EMA model at L_max with classifier-free guidance (the config's
            `sample.cfg`, precision `train.precision`), a fixed batch (default 64 samples, 2 steps).

Before timing, it checks that the two versions behave the same: equal initial weights, equal first step
(loss, its parts, gradient norm, weights after the step) and equal samples. It prints whether each is
bit-identical. Then, after warm-up, it times the reps alternately, flipping the order each rep (AB, BA, AB, ...)
so that neither version always runs first; both versions run the same step index in a rep, and at the end the
weights of the two trainers are compared again. A rep's ratio is after / before of that rep; the summary is
the median time of each version and the median [min-max] of the per-rep ratios (below 1: after is faster).

The masked family needs a VQ tokenizer (the trainer encodes the data set with it, the sampler decodes with
it): the script saves an untrained tokenizer of the config's architecture into the temporary folder and points
`tokenizer.path` at it, so the sampling time includes the (small) decode of the final tokens, as `elt sample`
does. The configs are read unchanged otherwise. Needs the MNIST cache (`elt data mnist`) and git. Pin the
thread count for comparable numbers. Setting up the masked family encodes the data set once per version (a
minute or two on a small CPU); the timed calls do not include it.

    OMP_NUM_THREADS=1 python benchmarks/before_after.py --before c7b1041 --reps 20 --json speed.json
    python benchmarks/before_after.py --before HEAD~1 --threads 2 --only flow --reps 5

`--after REV` compares two revisions instead of REV vs the working tree. The exit status is 1 when a check finds
the two versions behaving differently (the timings are still printed and written).
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"flow": "configs/mnist_flow.yaml", "masked": "configs/mnist_masked.yaml"}
ABSOLUTE_IMPORT = re.compile(r"^(\s*)(from|import)\s+elt(?=[.\s])", re.MULTILINE)
STRING_MODULE = re.compile(r"""["']elt\.[A-Za-z_][\w.]*(:[\w.]+)?["']""")


# ---- two versions in one process ---------------------------------------------------------------------------
def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def extract(rev: str, name: str, dest: Path) -> list[str]:
    """Write revision `rev`'s src/elt as package `name` under `dest`; returns notes on rewritten imports.
    Raises SystemExit when a file names an `elt.` module in a string (e.g. for importlib)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src/elt"], check=True,
                          capture_output=True).stdout
    raw = dest / f".{name}-raw"
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.12 (and recent patch releases)
            tar.extractall(raw, filter="data")
        else:
            tar.extractall(raw)
    pkg = dest / name
    shutil.move(str(raw / "src" / "elt"), pkg)
    shutil.rmtree(raw)
    notes, bad = [], []
    for path in sorted(pkg.rglob("*.py")):
        text = path.read_text()
        new, n = ABSOLUTE_IMPORT.subn(rf"\1\2 {name}", text)
        if n:
            path.write_text(new)
            notes.append(f"{path.relative_to(dest)}: rewrote {n} absolute `elt` import(s)")
        bad += [f"{path.relative_to(dest)}: {m.group(0)}" for m in STRING_MODULE.finditer(new)]
    if bad:
        raise SystemExit(f"{rev} names elt modules in strings, which `{name}` cannot rewrite safely:\n  "
                         + "\n  ".join(bad))
    return notes


def import_versions(before: str, after: str | None, tmp: Path):
    """-> (before package, after package, notes). `after` None = the working tree's src/elt."""
    import importlib

    sys.path.insert(0, str(tmp))
    notes = extract(before, "elt_before", tmp)
    if after is None:
        sys.path.insert(0, str(ROOT / "src"))
        new = importlib.import_module("elt")
        if Path(new.__file__).resolve().parent != ROOT / "src" / "elt":
            raise SystemExit(f"`elt` was imported from {new.__file__}, not from {ROOT / 'src'}")
    else:
        notes += extract(after, "elt_after", tmp)
        new = importlib.import_module("elt_after")
    old = importlib.import_module("elt_before")
    for pkg in (old, new):  # the submodules the benchmark drives
        for sub in ("config", "train", "tokenizers"):
            importlib.import_module(f"{pkg.__name__}.{sub}")
    return old, new, notes


# ---- one version's workloads -------------------------------------------------------------------------------
class Bench:
    """One version's trainer and sampler for one config; `train()` and `sample()` are the timed calls."""

    def __init__(self, pkg, config: str, overrides: list[str], run_dir: Path, batch: int, steps: int):
        self.cfg = pkg.config.load_config(ROOT / config, overrides)
        self.trainer = pkg.train.Trainer(self.cfg, run_dir, progress=False)
        self.step = itertools.count()
        L, n = self.cfg.train_loops, self.cfg.model.num_classes
        sampler = self.trainer.family.sampler(self.trainer.ema.model, run_dir)
        labels = torch.arange(batch) % n
        args = (labels, L, steps, self.cfg.sample.cfg, 0, batch, None, self.cfg.train.precision)
        self.sample = lambda: sampler(*args)
        cuda = self.trainer.dist.device.type == "cuda"
        self.sync = torch.cuda.synchronize if cuda else (lambda: None)

    def train(self):
        return self.trainer.train_step(next(self.step))

    def weights(self) -> dict[str, torch.Tensor]:
        ema = {f"ema.{k}": v for k, v in self.trainer.ema.model.state_dict().items()}
        return {**self.trainer.model.state_dict(), **ema}


def same_weights(a: Bench, b: Bench) -> bool:
    wa, wb = a.weights(), b.weights()
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def check_identical(old: Bench, new: Bench) -> dict[str, bool]:
    """Initial weights, the first training step and one sampling call, before vs after, bit for bit."""
    out = {"initial weights": same_weights(old, new)}
    r_old, r_new = old.train(), new.train()
    out["first step loss/parts/grad norm"] = (r_old.loss, r_old.parts, r_old.grad_norm, r_old.student_loops) == \
        (r_new.loss, r_new.parts, r_new.grad_norm, r_new.student_loops)
    out["weights after the first step"] = same_weights(old, new)
    out["samples"] = torch.equal(old.sample(), new.sample())
    return out


def time_pair(fn_old, fn_new, sync, reps: int, warmup: int) -> tuple[list[float], list[float]]:
    """Seconds per call of each, `reps` times, alternating and flipping the order every rep."""
    times = {"old": [], "new": []}
    calls = {"old": fn_old, "new": fn_new}
    for rep in range(warmup + reps):
        for key in (("old", "new") if rep % 2 == 0 else ("new", "old")):
            sync()
            t0 = time.perf_counter()
            calls[key]()
            sync()
            if rep >= warmup:
                times[key].append(time.perf_counter() - t0)
    return times["old"], times["new"]


def summary(old: list[float], new: list[float]) -> dict:
    ratios = [b / a for a, b in zip(old, new)]
    return {"before_s": old, "after_s": new, "median_before_s": statistics.median(old),
            "median_after_s": statistics.median(new), "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "reps": len(ratios)}


# ---- main ------------------------------------------------------------------------------------------------------
def save_untrained_tokenizer(pkg, config: str, out: Path) -> Path:
    """An untrained tokenizer of the config's architecture (timing does not depend on its weights)."""
    cfg = pkg.config.load_config(ROOT / config, [])
    torch.manual_seed(0)
    tok = pkg.tokenizers.VQAutoencoder(cfg.tokenizer, (cfg.model.channels, cfg.model.image_size,
                                                       cfg.model.image_size))
    return pkg.tokenizers.save_tokenizer(tok, cfg.tokenizer, out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="HEAD~1", help="git revision to compare against (default HEAD~1)")
    p.add_argument("--after", help="git revision to compare (default: the working tree)")
    p.add_argument("--only", default="flow,masked", help="families to run: flow,masked")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2, help="untimed alternating rounds after the identity check")
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--sample-steps", type=int, default=2)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    families = [f for f in args.only.split(",") if f]
    if unknown := set(families) - set(CONFIGS):
        p.error(f"unknown families {sorted(unknown)}: choose from {sorted(CONFIGS)}")

    before_commit = git("rev-parse", args.before)
    after_desc = git("rev-parse", args.after) if args.after else \
        f"working tree at {git('rev-parse', 'HEAD')}" + (" (modified)" if git("status", "--porcelain", "src") else "")
    result = {"before": args.before, "before_commit": before_commit, "after": args.after or "working tree",
              "after_commit": after_desc, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "reps": args.reps, "warmup": args.warmup, "sample_batch": args.sample_batch,
              "sample_steps": args.sample_steps, "identical": {}, "workloads": {}}
    print(f"before: {args.before} ({before_commit[:12]})   after: {after_desc}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.reps} reps after {args.warmup} "
          f"warm-up rounds")

    with tempfile.TemporaryDirectory(prefix="elt-before-after-") as tmp_name:
        tmp = Path(tmp_name)
        old_pkg, new_pkg, notes = import_versions(args.before, args.after, tmp)
        for note in notes:
            print(f"note: {note}")
        for fam in families:
            config, overrides = CONFIGS[fam], []
            if fam == "masked":
                tok = save_untrained_tokenizer(new_pkg, config, tmp / "tokenizer")
                overrides.append(f"tokenizer.path={tok}")
            make = lambda pkg, tag: Bench(pkg, config, overrides, tmp / f"{fam}-{tag}",  # noqa: E731
                                          args.sample_batch, args.sample_steps)
            old, new = make(old_pkg, "before"), make(new_pkg, "after")
            try:
                same = check_identical(old, new)
                for what, ok in same.items():
                    print(f"{fam}: {what}: {'identical' if ok else 'DIFFERENT'}")
                for name in ("train", "sample"):
                    t_old, t_new = time_pair(getattr(old, name), getattr(new, name), old.sync, args.reps, args.warmup)
                    result["workloads"][f"{fam} {name}"] = summary(t_old, t_new)
                same["weights after all steps"] = ok = same_weights(old, new)
                print(f"{fam}: weights after all steps: {'identical' if ok else 'DIFFERENT'}")
                result["identical"][fam] = same
            finally:
                old.trainer.close()
                new.trainer.close()

    print(f"\n{'workload':<14} {'before ms':>10} {'after ms':>10}   after/before median [min-max]")
    for name, w in result["workloads"].items():
        print(f"{name:<14} {1e3 * w['median_before_s']:>10.1f} {1e3 * w['median_after_s']:>10.1f}   "
              f"{w['ratio_median']:.3f} [{w['ratio_min']:.3f}-{w['ratio_max']:.3f}]  ({w['reps']} reps)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(all(v.values()) for v in result["identical"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
