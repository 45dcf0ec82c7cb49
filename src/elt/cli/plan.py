"""`elt plan RUN --gflops X`: the best measured setting within a compute budget, and the Pareto front."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="the best measured setting (loops, latents, steps, guidance budget) of a run "
                       "within a GFLOPs-per-sample budget, from its `elt anytime --eval` results")
    p.add_argument("table", help="RUN_DIR holding anytime/anytime.json, or an anytime.json")
    p.add_argument("--gflops", type=float, required=True, help="budget: GFLOPs per sample (counted)")
    p.add_argument("--metric", help="quality to optimise (default: fd_classifier, else fid, fd_video, "
                                    "class_consistency, whichever the table has)")
    p.add_argument("--json", help="also write the choice and the front here")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..outputs import output_file
    from ..planner import choose_metric, describe, load_points, plan

    out = output_file("--json", args.json, ".json", example="plan.json") if args.json else None
    table, points = load_points(args.table)
    metric = choose_metric(points, args.metric)
    result = plan(points, args.gflops, metric)
    choice = result["choice"]
    print(f"{table}: best {metric} within {args.gflops:g} GFLOPs per sample: {describe(choice)} -> "
          f"{metric} {choice[metric]:.4g} at {choice['gflops_per_sample']:.4g} GFLOPs")
    print(f"Pareto front ({metric}, {'lower' if metric.startswith(('fd', 'fid', 'fvd', 'motion')) else 'higher'} "
          f"is better):")
    for p in result["front"]:
        mark = "  <- chosen" if p is choice else ("  (over budget)" if p["gflops_per_sample"] > args.gflops else "")
        print(f"  {p['gflops_per_sample']:10.4g} GFLOPs  {metric} {p[metric]:10.4g}  {describe(p)}{mark}")
    if out:
        from ..atomic import write_text_atomic

        write_text_atomic(out, json.dumps({"table": str(table), **result}, indent=2, default=str) + "\n")
