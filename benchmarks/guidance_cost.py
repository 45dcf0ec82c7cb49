"""Wall time of guided sampling at different guiding-branch budgets, in one process, interleaved.

For one trained run, each variant samples the same labels with the same noise (the run's sampler, as
`elt sample` calls it) at the conditional budget (--loops, --latents); the variants differ only in the budget
(and label) of guidance's second branch:

    cfg               the unconditional branch at the conditional budget (one batched call per step)
    uncond_loops=LW   CFG with the unconditional branch at LW loops (cheap guidance on the loop axis)
    uncond_latents=JW CFG with the unconditional branch on JW latents per group (ELIT's CCFG)
    auto:loops=LW[,latents=JW]  autoguidance: the same label at the smaller budget

After one warm-up call per variant, reps run the variants in a rotated order (so none always runs first); a
rep's ratio is the variant's time / cfg's time in that rep. Printed: median seconds [min-max] per variant, the
median [min-max] of the per-rep ratios, and the counted GFLOPs ratio for comparison (FLOPs are what the
guidance saves; the wall-time ratio shows how much of that a CPU turns into time at this batch size).

    OMP_NUM_THREADS=2 python benchmarks/guidance_cost.py runs/flow --loops 4 --variants cfg uncond_loops=1 \
        --n 100 --reps 5 --json cost.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from elt.budget import Budget
from elt.sampling.generate import generate, load_run
from elt.sampling.save import gflops_for_request


def parse_variant(text: str, loops: int, latents: int | None) -> tuple[str, Budget | None, str]:
    """-> (name, guiding budget (None: as the conditional one), guide label kind)."""
    if text == "cfg":
        return text, None, "cfg"
    guide, _, spec = text.partition(":") if text.startswith("auto:") else ("cfg", "", text)
    guide = "autoguidance" if guide == "auto" else "cfg"
    lw, jw = loops, latents
    for part in spec.split(","):
        key, _, value = part.partition("=")
        if key in ("uncond_loops", "loops"):
            lw = int(value)
        elif key in ("uncond_latents", "latents"):
            jw = int(value)
        else:
            raise SystemExit(f"unknown variant {text!r}: use cfg, uncond_loops=LW, uncond_latents=JW or "
                             f"auto:loops=LW[,latents=JW]")
    return text, Budget(lw, jw), guide


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--loops", type=int, required=True)
    ap.add_argument("--latents", type=int, default=None)
    ap.add_argument("--variants", nargs="+", default=["cfg", "uncond_loops=1"])
    ap.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the run's sample.cfg)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--n", type=int, default=100, help="samples per call (one batch)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    loaded = load_run(args.run)
    steps = args.steps or loaded.cfg.sample.steps
    scale = args.cfg if args.cfg is not None else loaded.cfg.sample.cfg
    cond = Budget(args.loops, args.latents)
    variants = [parse_variant(v, args.loops, args.latents) for v in args.variants]
    if variants[0][0] != "cfg":
        variants.insert(0, ("cfg", None, "cfg"))
    labels = torch.arange(loaded.cfg.model.num_classes).repeat_interleave(-(-args.n // loaded.cfg.model.num_classes))
    labels = labels[:args.n]

    def run(v) -> float:
        _, unc, guide = v
        t0 = time.perf_counter()
        generate(loaded.sampler, labels, cond, steps, scale, 0, args.n, args.precision, "", uncond=unc, guide=guide)
        return time.perf_counter() - t0

    for v in variants:  # warm-up
        run(v)
    times: dict[str, list[float]] = {v[0]: [] for v in variants}
    for rep in range(args.reps):
        k = rep % len(variants)
        for v in variants[k:] + variants[:k]:
            times[v[0]].append(run(v))
    gflops = {name: gflops_for_request(loaded.model, cond, steps, scale, unc) for name, unc, _ in variants}
    result = {"run": str(args.run), "loops": args.loops, "latents": args.latents, "steps": steps, "cfg": scale,
              "n": args.n, "reps": args.reps, "threads": torch.get_num_threads(), "variants": {}}
    print(f"{args.run}: L={args.loops} J={args.latents} steps={steps} cfg={scale} n={args.n} reps={args.reps} "
          f"threads={torch.get_num_threads()}")
    for name, _, _ in variants:
        ratios = [t / c for t, c in zip(times[name], times["cfg"])]
        row = {"seconds_median": statistics.median(times[name]), "seconds_min": min(times[name]),
               "seconds_max": max(times[name]), "ratio_median": statistics.median(ratios),
               "ratio_min": min(ratios), "ratio_max": max(ratios), "gflops_per_sample": gflops[name],
               "gflops_ratio": gflops[name] / gflops["cfg"]}
        result["variants"][name] = row
        print(f"  {name:28s} {row['seconds_median']:7.2f} s [{row['seconds_min']:.2f}-{row['seconds_max']:.2f}]  "
              f"time ratio {row['ratio_median']:.3f} [{row['ratio_min']:.3f}-{row['ratio_max']:.3f}]  "
              f"GFLOPs ratio {row['gflops_ratio']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
