"""Compare elastic models at equal compute from their `anytime.json` files (written by `elt anytime --eval`).

    python benchmarks/pareto_claim.py RUNS/anytime.json [MORE/anytime.json ...] [--min-class-cons 0.95] \
        [--json claim.json]

For each metric the sweeps recorded (class-consistency, FD-classifier, FID), every run's Pareto front is the
best quality it reaches at or below each budget (GFLOPs per sample, counted). At every budget where some run
has a point, the table lists each run's front value there ("–" where the run has no point that cheap), so
"at equal GFLOPs, A is at least as good as the better of B and C" reads off the rows. Then, per run, the
range of budgets whose points keep class-consistency ≥ the threshold: smallest and largest GFLOPs, and their
ratio (how wide a compute range one trained model serves at that quality).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from elt.anytime import pareto_front  # noqa: E402

METRICS = [("class_consistency", "class-cons.", False), ("fd_classifier", "FD-cls", True), ("fid", "FID", True)]


def front_value(front: list[dict], key: str, budget: float) -> float | None:
    """The best value the front reaches at GFLOPs <= budget (None: nothing that cheap)."""
    ok = [r[key] for r in front if r["gflops_per_sample"] <= budget * (1 + 1e-9)]
    return ok[-1] if ok else None


def point(r: dict) -> str:
    return f"L={r['loops']}" + (f",J={r['latents']}" if r.get("latents") is not None else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tables", nargs="+")
    ap.add_argument("--min-class-cons", type=float, default=0.95)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    runs = [run for p in args.tables for run in json.loads(Path(p).read_text())["runs"]]
    out: dict = {"runs": [r["name"] for r in runs], "metrics": {}, "ranges": {}}
    for key, label, lower in METRICS:
        if not all(any(key in r for r in run["results"]) for run in runs):
            continue
        fronts = [pareto_front(run["results"], key, lower) for run in runs]
        budgets = sorted({r["gflops_per_sample"] for f in fronts for r in f})
        print(f"\n### {label} ({'lower' if lower else 'higher'} is better) on each run's Pareto front\n")
        print("| GFLOPs/sample | " + " | ".join(r["name"] for r in runs) + " |")
        print("|---|" + "---|" * len(runs))
        rows = []
        for g in budgets:
            vals = [front_value(f, key, g) for f in fronts]
            here = [next((point(r) for r in f if r["gflops_per_sample"] == g), "") for f in fronts]
            fmt = (lambda v: f"{100 * v:.1f}%") if key == "class_consistency" else (lambda v: f"{v:.1f}")
            cells = ["–" if v is None else fmt(v) + (f" ({h})" if h else "") for v, h in zip(vals, here)]
            print(f"| {g:.2f} | " + " | ".join(cells) + " |")
            rows.append({"gflops": g, "values": vals, "points": here})
        out["metrics"][key] = rows
    print(f"\n### Budget range with class-consistency >= {100 * args.min_class_cons:.0f}%\n")
    print("| run | cheapest point | GFLOPs | dearest point | GFLOPs | ratio |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        ok = sorted((r for r in run["results"] if r.get("class_consistency", 0) >= args.min_class_cons),
                    key=lambda r: r["gflops_per_sample"])
        if not ok:
            print(f"| {run['name']} | – | – | – | – | – |")
            continue
        lo, hi = ok[0], ok[-1]
        ratio = hi["gflops_per_sample"] / lo["gflops_per_sample"]
        print(f"| {run['name']} | {point(lo)} | {lo['gflops_per_sample']:.2f} | {point(hi)} | "
              f"{hi['gflops_per_sample']:.2f} | {ratio:.2f}× |")
        out["ranges"][run["name"]] = {"min": lo["gflops_per_sample"], "max": hi["gflops_per_sample"],
                                      "ratio": ratio, "cheapest": point(lo), "dearest": point(hi)}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
