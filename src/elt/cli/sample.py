"""`elt sample RUN_DIR --out OUT.npz`: samples at any loop count -> OUT.npz plus the record OUT.json."""
from __future__ import annotations

import time

import torch

from ..errors import ConfigError
from ..outputs import output_file
from ..precision import resolve_precision
from .args import add_sampling_args, add_uncond_latents_arg, add_uncond_loops_arg, latents_arg, loops_arg


def add_parser(sub) -> None:
    s = sub.add_parser("sample", help="sample a trained run at any loop count -> .npz (arr_0 images, arr_1 labels) "
                       "and a .json record beside it (request, wall time, GFLOPs per sample)")
    add_sampling_args(s)
    s.add_argument("--loops", type=loops_arg, default=None,
                   help="loop count L (default: the trained L_max), or one per step: 1,2,4,4,...")
    add_uncond_loops_arg(s)
    s.add_argument("--latents", type=latents_arg, default=None, metavar="J",
                   help="latents per group for a run with a latent interface (model.latent; default: its full "
                        "budget), or one per step: 1,2,4,4,...; fewer latents make each step cheaper")
    add_uncond_latents_arg(s)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--per-class", type=int, default=10, help="K samples of every class, in class order (default 10)")
    g.add_argument("--labels", type=int, nargs="+")
    g.add_argument("-n", "--num-samples", type=int, dest="n", metavar="N",
                   help="N samples with balanced labels (sample i has class i mod K), e.g. 50000 for FID-50k (not "
                        "`--n`: torchrun would take it for one of its own flags)")
    s.add_argument("--batch-size", type=int, default=None,
                   help="samples per forward batch (default: 500 flow, 128 masked; results do not depend on it)")
    s.add_argument("--chunk", type=int, default=1000,
                   help="samples per chunk file in OUT.parts/ (the unit of work of a rank and of resuming a killed "
                        "job; results do not depend on it)")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: the GPU of this rank when there is one")
    s.add_argument("--halt", metavar="RULE:TAU",
                   help="per-sample adaptive loops: sampler:τ (flow: how far one more loop would move the sampler's "
                        "next state, pixel units, e.g. 0.008), kl:τ (masked: KL between successive loops' token "
                        "distributions on the masked positions, e.g. 0.03) or latent:τ (relative core-state change, "
                        "e.g. 0.2); each sample stops looping at each step once the change is below τ")
    s.add_argument("--halt-cap", type=int, default=None, metavar="L",
                   help="with --halt: the most loops per call (default: the trained L_max)")
    s.add_argument("--budget", type=float, default=None, metavar="GFLOPS",
                   help="sample at the best measured setting within this many GFLOPs per sample (`elt plan`: "
                        "needs RUN_DIR/anytime/anytime.json from `elt anytime RUN_DIR --eval`)")
    s.add_argument("--out", required=True, help="FILE.npz (FILE.json is written beside it)")
    s.add_argument("--grid", help="also write a grid: PNG for images, an animated GIF for clips")
    s.add_argument("--mp4", help="clip runs: also write the grid as an H.264 MP4 (needs PyAV: elt[video])")
    s.set_defaults(func=run)


def run(args) -> None:
    """Sample the set over the ranks of `torchrun` (one process without it), merge it on the main rank."""
    from .. import distributed

    info = distributed.setup(args.device)
    try:
        _run(args, info)
        distributed.barrier()  # the other ranks wait for the merge: none leaves the group early
    finally:
        distributed.teardown()


def _apply_budget(args) -> dict | None:
    """--budget X: the planner's choice from the run's any-time table sets --loops, --latents, --steps, --cfg
    and the guidance budgets (which must not be given beside it) -> what was chosen, for the record."""
    if args.budget is None:
        return None
    given = [flag for flag, value in (("--loops", args.loops), ("--latents", args.latents), ("--steps", args.steps),
                                      ("--cfg", args.cfg), ("--uncond-loops", args.uncond_loops),
                                      ("--uncond-latents", args.uncond_latents), ("--halt", args.halt))
             if value is not None]
    if given:
        raise ConfigError(f"--budget chooses the setting itself: drop {', '.join(given)} (or drop --budget)")
    from ..planner import choose_metric, describe, load_points, plan

    table, points = load_points(args.run_dir)
    metric = choose_metric(points, None)
    choice = plan(points, args.budget, metric)["choice"]
    args.steps = int(choice["steps"])
    if choice.get("halt") is not None:  # a halting rule of `elt anytime --halt-list`
        args.halt, args.halt_cap, args.loops = str(choice["halt"]), int(choice["halt_cap"]), None
    elif choice.get("schedule") is not None:  # its static per-step schedule
        args.loops = [int(L) for L in choice["schedule"]]
    else:
        args.loops = int(choice["loops"])
    args.latents = None if choice.get("latents") is None else int(choice["latents"])
    args.cfg = None if choice.get("cfg") is None else float(choice["cfg"])
    args.uncond_loops = None if choice.get("uncond_loops") is None else int(choice["uncond_loops"])
    args.uncond_latents = None if choice.get("uncond_latents") is None else int(choice["uncond_latents"])
    print(f"budget {args.budget:g} GFLOPs per sample: {describe(choice)} ({metric} {choice[metric]:.4g} measured "
          f"at {choice['gflops_per_sample']:.4g} GFLOPs, {table})")
    return {"gflops": args.budget, "table": str(table), "metric": metric, "measured": choice[metric],
            "measured_gflops": choice["gflops_per_sample"], "setting": describe(choice)}


def _halt_rule(args, cfg):
    """--halt RULE:τ [--halt-cap L] -> a HaltRule (None without --halt), checked before anything is drawn."""
    if args.halt is None:
        if args.halt_cap is not None:
            raise ConfigError("--halt-cap caps the loops of --halt: pass --halt RULE:τ too, or use --loops")
        return None
    from ..sampling.adaptive import FAMILY_RULES, HaltRule

    if args.loops is not None or args.uncond_loops is not None or args.latents is not None:
        raise ConfigError("--halt picks every sample's loops itself (at the full latent budget of a model with "
                          "a latent interface): drop --loops / --uncond-loops / --latents (--halt-cap sets the "
                          "most loops)")
    rule = HaltRule.parse(args.halt, cfg.train_loops if args.halt_cap is None else args.halt_cap)
    if rule.kind not in FAMILY_RULES[cfg.family]:
        raise ConfigError(f"--halt {rule.kind} is not a rule of the {cfg.family} family: use "
                          f"{' or '.join(FAMILY_RULES[cfg.family])}")
    return rule


def _request_key(args, loaded, labels, loops, steps, guidance, kind) -> dict:
    """What makes a sample set: two runs with the same key give the same samples (the chunk manifest)."""
    import hashlib

    return {"run": str(args.run_dir), "checkpoint": str(loaded.checkpoint), "loops": str(loops),
            "uncond_loops": str(args.uncond_loops), "latents": str(args.latents),
            "uncond_latents": str(args.uncond_latents), "steps": steps, "cfg": guidance, "guidance": kind,
            "seed": args.seed, "precision": args.precision, "chunk": args.chunk, "halt": str(args.halt),
            "halt_cap": str(args.halt_cap),
            "labels_sha256": hashlib.sha256(labels.numpy().tobytes()).hexdigest()}


def _run(args, info) -> None:
    from .. import distributed
    from ..grid import sample_sheet, save_png
    from ..sampling.generate import generate, load_run
    from ..sampling.shards import claim_parts, draw_chunks, merge_chunks, parts_dir
    from ..sampling.request_checks import (at_least_1, check_guidance_kind, check_latent_budget, check_loops,
                                          check_seed, check_uncond_loops, class_labels, sampling_settings)
    from ..sampling.save import gflops_for_request, sample_record, sidecar_path, write_sidecar

    out = output_file("--out", args.out, ".npz")  # checked before sampling: nothing is lost to a bad name
    if sidecar_path(out).is_dir():
        raise ConfigError(f"--out {out}: the record {sidecar_path(out)} written beside it is a folder: move it "
                          f"away or choose another --out name")
    check_seed(args.seed)
    at_least_1("--chunk", args.chunk)
    planned = _apply_budget(args)
    loaded = load_run(args.run_dir, info.device)
    args.precision = resolve_precision(args.precision, info.device)  # the record says what ran
    cfg = loaded.cfg
    clips = cfg.makes_clips
    if args.grid:
        output_file("--grid", args.grid, ".gif" if clips else ".png", "grid.gif" if clips else "grid.png")
    if args.mp4:
        if not clips:
            raise ConfigError(f"--mp4 is for clip runs; {args.run_dir} makes images: use --grid FILE.png")
        output_file("--mp4", args.mp4, ".mp4", "grid.mp4")
        from ..data.video_folder import import_av

        import_av()  # before sampling: a missing PyAV must not cost the samples
    if args.batch_size is not None:
        at_least_1("--batch-size", args.batch_size)
    labels = class_labels(args.labels, args.per_class, cfg.model.num_classes, args.n)
    steps, guidance = sampling_settings(cfg, args.steps, args.cfg)
    loops = check_loops(cfg.train_loops if args.loops is None else args.loops, steps)
    uncond = check_uncond_loops(args.uncond_loops, guidance)
    budget, uncond_budget = check_latent_budget(loaded.model, loops, uncond, guidance, args.latents,
                                                args.uncond_latents, steps)
    guide, kind = check_guidance_kind(args.guidance, guidance, budget, uncond_budget)
    halt = _halt_rule(args, cfg)
    parts = parts_dir(out)
    if info.is_main:
        claim_parts(parts, _request_key(args, loaded, labels, loops, steps, guidance, kind))
    distributed.barrier()
    t0 = time.perf_counter()

    def draw(y, first):
        trace = []
        images = generate(loaded.sampler, y, budget, steps, guidance, args.seed, args.batch_size, args.precision,
                          desc="", uncond=uncond_budget, guide=guide, first_index=first, halt=halt, trace=trace)
        return images, ({"loops": torch.cat(trace, 1).T.contiguous()} if halt else {})  # loops: (n, steps)

    draw_chunks(draw, labels, parts, args.chunk, info.rank, info.world)
    distributed.barrier()
    if not info.is_main:
        return
    images, extra = merge_chunks(parts, labels, args.chunk, out)
    dt = time.perf_counter() - t0
    cheap = "" if uncond is None else f", uncond_loops={uncond}"
    cheap += "" if args.latents is None else f", latents={args.latents}"
    cheap += "" if args.uncond_latents is None else f", uncond_latents={args.uncond_latents}"
    print(f"wrote {len(labels)} samples to {out} in {dt:.1f} s (loops={halt or loops}{cheap}, steps={steps}, "
          f"cfg={guidance} ({kind}), seed={args.seed})")
    if halt is None:
        gflops = gflops_for_request(loaded.model, budget, steps, guidance, uncond_budget)
    else:
        from ..sampling.adaptive import halted_gflops

        gflops = halted_gflops(loaded.model, extra["loops"].T, guidance != 1.0)
    record = sample_record(args.run_dir, loaded.step, loops, steps, guidance, args.seed, labels, args.precision,
                           args.batch_size, dt, gflops, uncond, args.latents, args.uncond_latents, kind)
    record["labels"]["rule"] = ("balanced: sample i has class i mod K" if args.n else "given" if args.labels
                                else "per class, in class order")
    record |= {"processes": info.world, "chunk": args.chunk}
    if planned is not None:
        record["budget"] = planned
    if halt is not None:
        used = extra["loops"].float()  # (N, steps)
        record |= {"loops": None, "halt": {"rule": halt.kind, "tau": halt.tau, "cap": halt.cap},
                   "mean_loops_per_call": round(float(used.mean()), 4),
                   "mean_loops_per_step": [round(float(v), 4) for v in used.mean(0)]}
        print(f"halting {halt}: {float(used.mean()):.3f} loops per call on average")
    print(f"wrote {write_sidecar(out, record)} ({gflops:.4g} GFLOPs per sample)")
    per_class = None if args.labels or args.n else args.per_class
    if args.grid and clips:
        from ..video_out import clip_sheet, write_gif_grid

        write_gif_grid(clip_sheet(images, cfg.model.num_classes, per_class), args.grid)
        print(f"wrote grid {args.grid}")
    elif args.grid:
        save_png(sample_sheet(images, cfg.model.num_classes, per_class), args.grid, scale=2)
        print(f"wrote grid {args.grid}")
    if args.mp4:
        from ..video_out import clip_sheet, write_mp4

        print(f"wrote {write_mp4(clip_sheet(images, cfg.model.num_classes, per_class), args.mp4)}")
