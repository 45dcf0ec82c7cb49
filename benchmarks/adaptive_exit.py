"""Does per-sample adaptive exit beat fixed loop counts at equal compute? (the evaluation that can say no)

    python benchmarks/adaptive_exit.py RUN --classifier CLS_DIR [--n 1000] [--taus 0.004 0.008 0.016]
        [--steps 20] [--cfg 3] [--json FILE]

On a flow-family MNIST run, with paired seeds (every method draws the same N samples: same labels, same
starting noise), it samples:
- fixed L = 1 .. L_max (the any-time curve);
- adaptive `--halt sampler:τ` for each τ (cap L_max);
- a static per-step schedule for each τ: L_k = the rounded mean exit at step k of the rule on `--calib-n`
  held-out samples (another seed): per-step adaptivity without per-sample information;
- a shuffled-exit control for each τ: every sample runs the exits of another sample (a permutation per step of
  the adaptive run's own exits, so the same per-step exit distribution): if adaptive does not beat this, the
  rule carries no per-sample information.
Quality: FD in the digit classifier's features against the real train split (FD-classifier) and
class-consistency; compute: counted GFLOPs per sample (adaptive includes the readouts that judge each loop;
the controls need none). Paired bootstrap (resampling the N sample indices, `--boot` times) gives 95%
intervals of adaptive minus each control, and of adaptive minus the fixed curve interpolated at its GFLOPs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from elt.anytime import gflops_per_sample  # noqa: E402
from elt.eval.classifier import embed, load_classifier, predict  # noqa: E402
from elt.eval.frechet import feature_stats, frechet_distance  # noqa: E402
from elt.eval.reference import real_images  # noqa: E402
from elt.sampling.adaptive import ForcedExits, HaltRule, halted_gflops  # noqa: E402
from elt.sampling.generate import load_run  # noqa: E402
from elt.sampling.request import SampleRequest  # noqa: E402


class Judge:
    """Per-sample classifier features and correctness, and FD of any subset against the real train split."""

    def __init__(self, classifier: str, ref: str, size: int, channels: int):
        self.clf = load_classifier(classifier)
        self.ref_stats = feature_stats(embed(self.clf, real_images(ref, "train", size, channels)).numpy())

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        return {"features": embed(self.clf, images).numpy(), "correct": (predict(self.clf, images) == labels).numpy()}

    def fd(self, features: np.ndarray) -> float:
        return frechet_distance(*feature_stats(features), *self.ref_stats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--ref", default="mnist")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--calib-n", type=int, default=200)
    ap.add_argument("--taus", type=float, nargs="+", default=[0.004, 0.008, 0.016])
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--cfg", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--json")
    args = ap.parse_args()
    run = load_run(args.run)
    model, cfg = run.model, run.cfg
    steps = args.steps or cfg.sample.steps
    guidance = cfg.sample.cfg if args.cfg is None else args.cfg
    k, cap = cfg.model.num_classes, cfg.train_loops
    labels = torch.arange(args.n) % k
    judge = Judge(args.classifier, args.ref, cfg.model.image_size, cfg.model.channels)

    def draw(labels, seed, loops=cap, halt=None):
        trace = []
        imgs = run.sampler(SampleRequest(labels, loops, steps, guidance, seed=seed, batch_size=250, halt=halt,
                                         trace=trace))
        return imgs, (torch.cat(trace, 1) if trace else None)

    points = {}

    def add(name, imgs, gflops, kind, extra=None):
        points[name] = {"kind": kind, "gflops": gflops, **judge.score(imgs, labels), **(extra or {})}
        p = points[name]
        print(f"{name:<22} {gflops:8.3f} GFLOPs  FD-cls {judge.fd(p['features']):8.3f}  "
              f"class-cons {p['correct'].mean():.3f}", flush=True)

    for L in range(1, cap + 1):
        add(f"fixed L={L}", draw(labels, args.seed, L)[0], gflops_per_sample(model, L, steps, guidance), "fixed",
            {"loops": L})
    for tau in args.taus:
        rule = HaltRule("sampler", tau, cap)
        imgs, trace = draw(labels, args.seed, halt=rule)  # trace (steps, N)
        add(f"adaptive tau={tau:g}", imgs, halted_gflops(model, trace, guidance != 1), "adaptive",
            {"tau": tau, "mean_loops": float(trace.float().mean()), "per_step": trace.float().mean(1).tolist(),
             "heat": [[int((trace[s] == L).sum()) for L in range(1, cap + 1)] for s in range(steps)]})
        calib = draw(torch.arange(args.calib_n) % k, args.seed + 1, halt=rule)[1]
        schedule = calib.float().mean(1).round().clamp(1, cap).long().tolist()
        add(f"static tau={tau:g}", draw(labels, args.seed, schedule)[0],
            sum(gflops_per_sample(model, L, 1, guidance) for L in schedule), "static", {"tau": tau,
                                                                                       "schedule": schedule})
        g = torch.Generator().manual_seed(1234)
        shuffled = torch.stack([row[torch.randperm(len(row), generator=g)] for row in trace])
        forced = draw(labels, args.seed, halt=ForcedExits(shuffled, cap))[0]
        forward_only = sum(gflops_per_sample(model, int(L), 1, guidance) * int(c)
                           for L, c in zip(*torch.unique(shuffled, return_counts=True))) / args.n
        add(f"shuffled tau={tau:g}", forced, forward_only, "shuffled", {"tau": tau})

    fixed = sorted((p for p in points.values() if p["kind"] == "fixed"), key=lambda p: p["gflops"])
    g = np.random.default_rng(0)
    boots = [g.integers(0, args.n, args.n) for _ in range(args.boot)]

    def fd_at(p, idx):
        return judge.fd(p["features"][idx])

    def fixed_fd_at(gflops, idx):
        """The fixed curve's FD at `gflops`, linear between its neighbouring points."""
        xs = [p["gflops"] for p in fixed]
        j = int(np.clip(np.searchsorted(xs, gflops), 1, len(xs) - 1))
        lo, hi = fixed[j - 1], fixed[j]
        w = (gflops - lo["gflops"]) / (hi["gflops"] - lo["gflops"])
        return (1 - w) * fd_at(lo, idx) + w * fd_at(hi, idx)

    summary = []
    for tau in args.taus:
        a = points[f"adaptive tau={tau:g}"]
        row = {"tau": tau, "mean_loops": a["mean_loops"], "gflops": a["gflops"]}
        for other in ("static", "shuffled", "fixed"):
            diffs = []
            for idx in boots:
                ref = (fixed_fd_at(a["gflops"], idx) if other == "fixed"
                       else fd_at(points[f"{other} tau={tau:g}"], idx))
                diffs.append(fd_at(a, idx) - ref)
            lo, med, hi = np.percentile(diffs, [2.5, 50, 97.5])
            row[f"fd_minus_{other}"] = {"median": float(med), "ci95": [float(lo), float(hi)]}
        summary.append(row)
        print(f"tau={tau:g}: mean loops {a['mean_loops']:.2f}, {a['gflops']:.3f} GFLOPs; FD-cls adaptive minus "
              + ", ".join(f"{o} {row[f'fd_minus_{o}']['median']:+.3f} [{row[f'fd_minus_{o}']['ci95'][0]:+.3f}, "
                          f"{row[f'fd_minus_{o}']['ci95'][1]:+.3f}]" for o in ("static", "shuffled", "fixed")))
    if args.json:
        out = {"run": args.run, "n": args.n, "steps": steps, "cfg": guidance, "seed": args.seed, "boot": args.boot,
               "protocol": f"{args.n} samples per point (labels i mod {k}, seed {args.seed}, the same noise for "
                           f"every method), {steps} steps, CFG {guidance}; FD in the classifier's penultimate "
                           f"features against the {args.ref} train split; static schedules calibrated on "
                           f"{args.calib_n} samples of seed {args.seed + 1}",
               "points": {name: {"kind": p["kind"], "gflops": p["gflops"], "fd_classifier": judge.fd(p["features"]),
                                 "class_consistency": float(p["correct"].mean()),
                                 **{k2: v for k2, v in p.items() if k2 in ("loops", "tau", "mean_loops", "per_step",
                                                                        "heat", "schedule")}}
                          for name, p in points.items()},
               "summary": summary}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
