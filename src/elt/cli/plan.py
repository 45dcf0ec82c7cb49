"""`elt plan RUN --gflops X | --seconds X`: the best measured setting within a compute budget, and the Pareto
front (`--measure` measures a run that has no any-time table yet)."""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="the best measured setting (loops, latents, steps, guidance budget, halting rule) "
                       "of a run within a budget per sample, from its `elt anytime --eval` results")
    p.add_argument("table", help="RUN_DIR holding anytime/anytime.json, or an anytime.json")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--gflops", type=float, help="budget: GFLOPs per sample (counted)")
    budget.add_argument("--seconds", type=float, help="budget: seconds per sample, as measured when the table was "
                        "made (its machine, batch size and load)")
    p.add_argument("--metric", help="quality to optimise (default: fd_classifier, else fid, fd_video, "
                                    "class_consistency, whichever the table has)")
    p.add_argument("--json", help="also write the choice and the front here")
    p.add_argument("--plot", help="also plot every measured point, the front, the budget and the choice (.png)")
    p.add_argument("--measure", action="store_true",
                   help="RUN_DIR without a table: measure it first (`elt anytime RUN_DIR --eval --out "
                        "RUN_DIR/anytime` with --classifier, --per-class, --steps-list) instead of failing")
    p.add_argument("--classifier", help="with --measure: the dataset classifier (FD-classifier, class-consistency)")
    p.add_argument("--per-class", type=int, default=100, help="with --measure: samples per class at each point")
    p.add_argument("--steps-list", type=int, nargs="+", help="with --measure: also sweep these sampling steps")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..errors import ConfigError
    from ..outputs import output_file
    from ..planner import choose_metric, describe, load_points, plan

    out = output_file("--json", args.json, ".json", example="plan.json") if args.json else None
    plot = output_file("--plot", args.plot, ".png", example="plan.png") if args.plot else None
    if not args.measure and (args.classifier or args.steps_list):
        raise ConfigError("--classifier / --steps-list say how to measure a run: add --measure")
    cost, budget = ("gflops_per_sample", args.gflops) if args.gflops is not None else ("seconds_per_sample",
                                                                                        args.seconds)
    if args.measure:
        _measure(args)
    table, points = load_points(args.table)
    metric = choose_metric(points, args.metric)
    result = plan(points, budget, metric, cost)
    choice = result["choice"]
    unit = "GFLOPs" if cost == "gflops_per_sample" else "s"
    print(f"{table}: best {metric} within {budget:g} {unit} per sample: {describe(choice)} -> "
          f"{metric} {choice[metric]:.4g} at {choice[cost]:.4g} {unit}")
    print(f"Pareto front ({metric}, {'lower' if metric.startswith(('fd', 'fid', 'fvd', 'motion')) else 'higher'} "
          f"is better):")
    for p in result["front"]:
        mark = "  <- chosen" if p is choice else ("  (over budget)" if p[cost] > budget else "")
        print(f"  {p[cost]:10.4g} {unit:<6}  {metric} {p[metric]:10.4g}  {describe(p)}{mark}")
    if out:
        from ..atomic import write_text_atomic

        write_text_atomic(out, json.dumps({"table": str(table), **result}, indent=2, default=str) + "\n")
    if plot:
        from ..plots import plot_plan

        print(f"wrote {plot_plan(points, result, plot)}")


def _measure(args) -> None:
    """--measure: a run folder without a table gets one (`elt anytime RUN --eval --out RUN/anytime`)."""
    from ..anytime_run import AnytimeOptions, run_anytime
    from ..errors import ConfigError
    from ..planner import table_in

    run_dir = Path(args.table)
    if not run_dir.is_dir():
        raise ConfigError(f"--measure measures a run folder; {run_dir} is not one (an anytime.json is already "
                          f"measured: drop --measure)")
    if table_in(run_dir) is not None:
        return  # measured already: plan from it
    if not args.classifier:
        raise ConfigError("--measure scores the run with a dataset classifier: pass --classifier CLS_DIR (made by "
                          "`elt eval train-classifier DATA --out CLS_DIR`)")
    run_anytime(AnytimeOptions(runs=[str(run_dir)], out=str(run_dir / "anytime"), eval=True,
                               classifier=args.classifier, features=["classifier"], per_class=args.per_class,
                               steps_list=args.steps_list))
