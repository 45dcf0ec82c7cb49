"""The evaluation of per-sample adaptive exit that can say no (`elt anytime RUN --eval --halt-list RULE:τ ...`).

With paired samples (every method draws the same N samples: the same labels, the same noise streams), for each
halting rule it measures, beside the fixed-L points of the any-time sweep (L = 1 .. cap):
- adaptive: the rule itself (compaction; counted GFLOPs include the readouts that judge each loop);
- static: a per-step schedule L_k = the rounded mean exit at step k of the rule on `calib_n` held-out samples
  (seed + 1): per-step allocation without per-sample information;
- shuffled: each sample runs the exits of another sample (a permutation per step of the adaptive run's own
  exits, so the same per-step exit distribution): if adaptive does not beat it, the rule's per-sample signal
  carries no information.
Paired bootstrap over the N sample indices gives 95% intervals of adaptive minus each control, and minus the
fixed curve interpolated at the adaptive GFLOPs, in FD of the dataset classifier's features. Per rule kind, a
probe on the fixed-cap trajectory of the held-out samples correlates the rule's value at loop l (the change
from l - 1) with the true gap to the cap's prediction (the same measure between l and the cap).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .anytime import gflops_per_sample
from .eval.classifier import embed, predict
from .eval.frechet import feature_stats, frechet_distance
from .eval.report import headline
from .sampling.adaptive import ForcedExits, GapProbe, HaltRule, halted_gflops
from .sampling.generate import generate


@dataclass
class Point:
    """One evaluated method: per-sample classifier features (N, D) and correctness (N,), its GFLOPs per sample."""

    name: str
    kind: str  # fixed | adaptive | static | shuffled
    gflops: float
    features: np.ndarray
    correct: np.ndarray
    extra: dict = field(default_factory=dict)


class Judge:
    """Per-sample features in the dataset classifier's space, and FD of any subset against the reference."""

    def __init__(self, classifier, reference_features: np.ndarray):
        self.classifier = classifier
        self.ref_stats = feature_stats(reference_features)

    def point(self, name: str, kind: str, images: torch.Tensor, labels: torch.Tensor, gflops: float,
              **extra) -> Point:
        """uint8 images (N, H, W, C) -> a Point."""
        nchw = images.permute(0, 3, 1, 2).contiguous()
        return Point(name, kind, gflops, embed(self.classifier, nchw).numpy(),
                     (predict(self.classifier, nchw) == labels).numpy(), extra)

    def fd(self, point: Point, idx: np.ndarray | None = None) -> float:
        feats = point.features if idx is None else point.features[idx]
        return frechet_distance(*feature_stats(feats), *self.ref_stats)


def static_schedule(calib_loops: torch.Tensor, cap: int) -> list[int]:
    """(steps, n) exits of the held-out samples -> the per-step schedule: the rounded mean exit at each step."""
    return calib_loops.float().mean(1).round().clamp(1, cap).long().tolist()


def shuffled_exits(loops: torch.Tensor, seed: int = 1234) -> torch.Tensor:
    """(steps, N) exits -> each step's exits permuted across the samples (the same per-step distribution, another
    sample's loops)."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([row[torch.randperm(len(row), generator=g)] for row in loops])


def fixed_curve_at(fixed: list[tuple[float, float]], gflops: float) -> float:
    """[(GFLOPs, FD)] of the fixed-L points sorted by GFLOPs -> FD at `gflops`, linear between the neighbouring
    points (extrapolated from the two end points outside them)."""
    xs = [x for x, _ in fixed]
    j = int(np.clip(np.searchsorted(xs, gflops), 1, len(xs) - 1))
    (x0, y0), (x1, y1) = fixed[j - 1], fixed[j]
    w = (gflops - x0) / (x1 - x0)
    return (1 - w) * y0 + w * y1


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays (ties broken by order: the values are continuous)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class StudySettings:
    """What to sample: the run's sampler and model, the paired labels (N,), steps, guidance, seed, precision."""

    sampler: object
    model: torch.nn.Module
    labels: torch.Tensor
    num_classes: int
    steps: int
    guidance: float
    seed: int
    precision: str
    calib_n: int = 200
    boot: int = 200
    batch_size: int | None = None


def run_study(s: StudySettings, rules: list[HaltRule], fixed: dict[int, Point], judge: Judge, evaluate,
              log=print) -> tuple[dict, list[dict]]:
    """The study for `rules` (one cap) beside the fixed-L points `fixed` {L: Point} of the same labels and seed
    -> (the study dict for adaptive.json, the adaptive and static rows for anytime.json). `evaluate(images,
    labels)` -> the any-time evaluator's metrics of a point."""
    cap = rules[0].cap
    missing = [L for L in range(1, cap + 1) if L not in fixed]
    if missing:
        raise ValueError(f"the fixed-L points {missing} are missing: the sweep must run L = 1 .. {cap}")
    guided = s.guidance != 1.0
    points = [fixed[L] for L in range(1, cap + 1)]
    rows = []
    calib_labels = torch.arange(s.calib_n) % s.num_classes

    def draw(labels, seed, loops, halt=None, desc=""):
        trace = []
        t0 = time.perf_counter()
        images = generate(s.sampler, labels, loops, s.steps, s.guidance, seed, s.batch_size, s.precision,
                          desc=desc, halt=halt, trace=trace)
        return images, (torch.cat(trace, 1) if trace else None), time.perf_counter() - t0

    def scored(point: Point, images, dt, **keys) -> dict:
        metrics = evaluate(images, s.labels)
        log(f"{point.name}: {point.gflops:.4g} GFLOPs per sample, " + ", ".join(
            f"{k} {v:.4g}" for k, v in headline(metrics).items() if k != "n") + f" ({len(images)} samples, "
            f"{dt:.1f} s)")
        return {**keys, "steps": s.steps, "gflops_per_sample": point.gflops, "sample_seconds": round(dt, 2),
                **headline(metrics), "report": metrics}

    for rule in rules:
        tag = f"{rule.kind}:{rule.tau:g}"
        images, trace, dt = draw(s.labels, s.seed, cap, rule, f"adaptive {tag}")  # trace (steps, N)
        heat = [[int((trace[k] == L).sum()) for L in range(1, cap + 1)] for k in range(s.steps)]
        a = judge.point(f"adaptive {tag}", "adaptive", images, s.labels, halted_gflops(s.model, trace, guided),
                        rule=tag, tau=rule.tau, mean_loops=float(trace.float().mean()),
                        per_step=trace.float().mean(1).tolist(), heat=heat)
        rows.append(scored(a, images, dt, loops=round(a.extra["mean_loops"], 4), halt=tag, halt_cap=cap))
        points.append(a)
        calib = draw(calib_labels, s.seed + 1, cap, rule, f"calibrate {tag}")[1]
        schedule = static_schedule(calib, cap)
        images, _, dt = draw(s.labels, s.seed, schedule, desc=f"static {tag}")
        st = judge.point(f"static {tag}", "static", images, s.labels,
                         sum(gflops_per_sample(s.model, L, 1, s.guidance) for L in schedule), rule=tag,
                         schedule=schedule)
        rows.append(scored(st, images, dt, loops=round(float(np.mean(schedule)), 4), schedule=schedule))
        points.append(st)
        shuffled = shuffled_exits(trace)
        images, _, dt = draw(s.labels, s.seed, cap, ForcedExits(shuffled, cap), f"shuffled {tag}")
        levels, counts = torch.unique(shuffled, return_counts=True)
        forward_only = sum(gflops_per_sample(s.model, int(L), 1, s.guidance) * int(c)
                           for L, c in zip(levels, counts)) / len(s.labels)
        sh = judge.point(f"shuffled {tag}", "shuffled", images, s.labels, forward_only, rule=tag)
        scored(sh, images, dt)
        points.append(sh)
    correlation = {kind: _gap_correlation(s, kind, cap, calib_labels, [r.tau for r in rules if r.kind == kind])
                   for kind in dict.fromkeys(r.kind for r in rules)} if cap > 2 else {}
    for kind, c in correlation.items():
        log(f"{kind} rule vs the true gap to L = {cap}: Spearman {c['spearman']:+.3f} over {c['pairs']} "
            f"(step, sample, loop) pairs; per loop " + ", ".join(f"l={l} {r:+.3f}" for l, r in c["per_loop"].items())
            + "; across the samples of one step (mean over steps) " + ", ".join(
                f"l={l} {r:+.3f}" for l, r in c["within_step"].items()))
    summary = _paired_bootstrap(s, rules, points, judge, log)
    study = {"n": len(s.labels), "steps": s.steps, "cfg": s.guidance, "seed": s.seed, "cap": cap,
             "calib_n": s.calib_n, "boot": s.boot,
             "protocol": f"{len(s.labels)} paired samples per point ({s.num_classes} classes, seed {s.seed}: the "
                         f"same labels and noise for every method), {s.steps} steps, CFG {s.guidance:g}, precision "
                         f"{s.precision}; FD in the dataset classifier's penultimate features against the "
                         f"reference; static schedules and the gap probe on {s.calib_n} samples of seed "
                         f"{s.seed + 1}; 95% paired bootstrap intervals over the sample indices ({s.boot} "
                         f"resamples)",
             "points": {p.name: {"kind": p.kind, "gflops": p.gflops, "fd_classifier": judge.fd(p),
                                 "class_consistency": float(p.correct.mean()), **p.extra} for p in points},
             "summary": summary, "correlation": correlation}
    return study, rows


def _gap_correlation(s: StudySettings, kind: str, cap: int, labels: torch.Tensor, taus: list[float]) -> dict:
    """The rule's value against the true gap to the cap on the fixed-cap trajectory of the held-out samples."""
    probe = GapProbe(kind, cap)
    generate(s.sampler, labels, cap, s.steps, s.guidance, s.seed + 1, s.batch_size, s.precision,
             desc=f"gap probe {kind}", halt=probe, trace=[])
    values = torch.cat([v for _, v, _ in probe.records]).numpy()  # (steps·n, cap-2)
    gaps = torch.cat([g for _, _, g in probe.records]).numpy()
    steps = np.concatenate([np.full(len(v), k) for k, v, _ in probe.records])  # (steps·n,) the step of each row
    per_loop = {str(l): spearman(values[:, i], gaps[:, i]) for i, l in enumerate(range(2, cap))}
    # within a step and a loop: does the rule rank the samples by their gap? (the per-sample information the
    # static schedule lacks; pooled correlations are dominated by the differences between steps)
    within = {str(l): float(np.nanmean([spearman(values[steps == k, i], gaps[steps == k, i])
                                     for k in np.unique(steps)])) for i, l in enumerate(range(2, cap))}
    decisions = {}
    for tau in taus:  # what stopping where the rule says would really lose, against going on
        stop = values < tau
        decisions[f"{tau:g}"] = {"stop_fraction": float(stop.mean()),
                                 "median_gap_when_stopping": float(np.median(gaps[stop])) if stop.any() else None,
                                 "median_gap_when_going_on": float(np.median(gaps[~stop])) if (~stop).any() else None}
    keep = np.random.default_rng(0).permutation(values.size)[:4000]  # a sample of pairs for the scatter plot
    return {"spearman": spearman(values.ravel(), gaps.ravel()), "pairs": int(values.size), "per_loop": per_loop,
            "within_step": within, "decisions": decisions, "scatter": {"value": values.ravel()[keep].tolist(),
                                                "gap": gaps.ravel()[keep].tolist()}}


def _paired_bootstrap(s: StudySettings, rules: list[HaltRule], points: list[Point], judge: Judge, log) -> list[dict]:
    """Adaptive minus static, shuffled and the fixed curve at equal GFLOPs, median and 95% interval per rule."""
    by_name = {p.name: p for p in points}
    fixed = sorted((p for p in points if p.kind == "fixed"), key=lambda p: p.gflops)
    n = len(s.labels)
    g = np.random.default_rng(0)
    boots = [g.integers(0, n, n) for _ in range(s.boot)]
    summary = []
    for rule in rules:
        tag = f"{rule.kind}:{rule.tau:g}"
        a = by_name[f"adaptive {tag}"]
        row = {"rule": tag, "mean_loops": a.extra["mean_loops"], "gflops": a.gflops}
        for other in ("static", "shuffled", "fixed"):
            diffs = []
            for idx in boots:
                ref = (fixed_curve_at([(p.gflops, judge.fd(p, idx)) for p in fixed], a.gflops) if other == "fixed"
                       else judge.fd(by_name[f"{other} {tag}"], idx))
                diffs.append(judge.fd(a, idx) - ref)
            lo, med, hi = np.percentile(diffs, [2.5, 50, 97.5])
            row[f"fd_minus_{other}"] = {"median": float(med), "ci95": [float(lo), float(hi)]}
        summary.append(row)
        log(f"{tag}: mean loops {a.extra['mean_loops']:.2f}, {a.gflops:.4g} GFLOPs; FD-classifier adaptive minus "
            + ", ".join(f"{o} {row[f'fd_minus_{o}']['median']:+.3f} [{row[f'fd_minus_{o}']['ci95'][0]:+.3f}, "
                        f"{row[f'fd_minus_{o}']['ci95'][1]:+.3f}]" for o in ("static", "shuffled", "fixed")))
    return summary
