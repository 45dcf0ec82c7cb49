"""The any-time run of `elt anytime`, callable from Python: per trained run, a grid with a column per loop count
and a row per class; with evaluation, the quality at every loop count (and sampling-step count) written to
`anytime.json` and plotted against loops and GFLOPs, overlaying the runs (earlier anytime.json files included).

    from elt.anytime_run import AnytimeOptions, run_anytime
    run_anytime(AnytimeOptions(runs=["runs/flow"], out="runs/flow/anytime", evaluate=True))
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .errors import ConfigError, DataError
from .outputs import output_folder
from .precision import check_precision, resolve_precision
from .sampling.generate import LoadedRun, generate, load_run
from .budget import Budget
from .sampling.request_checks import (at_least_1, check_guidance_kind, check_latent_budget, check_seed,
                                      check_uncond_loops, sampling_settings)


@dataclass
class AnytimeOptions:
    """What to sweep and score; the field names follow the `elt anytime` flags."""

    runs: list[str]  # run folders, or anytime.json files of earlier sweeps (overlaid without sampling)
    out: str  # output folder
    steps: int | None = None  # sampling steps (default: each run's sample.steps)
    cfg: float | None = None  # guidance scale (default: each run's sample.cfg)
    seed: int = 0
    precision: str = "auto"  # "auto" | "bf16" | "fp32"; resolved on the sampling device before anything runs
    max_loops: int | None = None  # last loop count (default L_max + 2; 1 for a baseline run)
    eval: bool = False  # score every loop count (a classifier alone also turns on its fast metrics)
    steps_list: list[int] | None = None  # with eval: also sweep these sampling steps
    ref: str | None = None  # reference data (default: the first run's data set)
    classifier: str | None = None
    features: list[str] | None = None
    inception: str | None = None
    per_class: int = 100  # samples per class at each evaluated point
    uncond_loops: int | None = None  # loop count of guidance's unconditional branch (None: as each column's)
    latents_list: list[int] | None = None  # with eval: sweep these latents per group (runs with model.latent)
    uncond_latents: int | None = None  # latents per group of guidance's unconditional branch (None: each point's)
    guidance: str | None = None  # cfg | ccfg | autoguidance (see `elt sample --guidance`)
    halt_list: list[str] | None = None  # with eval: study these halting rules (RULE:τ) against fixed L
    halt_cap: int | None = None  # the rules' loop cap (default: the trained L_max)
    calib_n: int = 200  # held-out samples calibrating the static schedules and probing the gap
    boot: int = 200  # paired bootstrap resamples


def run_labels(run_dirs: list[str]) -> list[str]:
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


@dataclass
class _Planned:
    """One run to sample: the loaded run, its loop counts and its sampling settings."""

    run: LoadedRun
    loop_counts: list[int]
    steps: int
    guidance: float
    uncond: int | None = None  # loop count of guidance's unconditional branch (None: as the conditional one)
    latent_counts: list[int | None] | None = None  # the latents per group swept (None: the model's only budget)
    uncond_latents: int | None = None  # latents of the guiding branch (None: as each point's)
    guide: str = "cfg"  # the guiding branch's label: "cfg" (null) or "autoguidance" (the same)
    guidance_kind: str = "cfg"  # none | cfg | ccfg | autoguidance, for the record


def run_anytime(opts: AnytimeOptions, log: Callable[[str], None] = print) -> Path | None:
    """Check every input, then write the grids and (with evaluation) anytime.json and anytime_quality.png into
    `opts.out`; returns the anytime.json path, or None when nothing was evaluated."""
    out = output_folder("--out", opts.out)
    labels = run_labels(opts.runs)  # unique: two runs named `run` in different folders get two grids
    grids = ["anytime.png" if len(opts.runs) == 1 else f"anytime_{label}.png" for label in labels]
    _refuse_folders(out, ("anytime.json", "anytime_quality.png", "anytime_pareto.png", *grids))
    check_seed(opts.seed)
    check_precision("--precision", opts.precision, ConfigError)
    opts = replace(opts, precision=resolve_precision(opts.precision, torch.device("cpu")))  # recorded: what ran
    evaluate = opts.eval or bool(opts.classifier)
    if opts.steps_list and not evaluate:
        raise ConfigError("--steps-list sweeps sampling steps for --eval; add --eval")
    if opts.latents_list and not evaluate:
        raise ConfigError("--latents-list sweeps latent budgets for --eval; add --eval")
    # every input and setting is checked before anything is sampled or written
    per_class = at_least_1("--per-class", opts.per_class) if evaluate else opts.per_class
    step_list = [at_least_1("--steps-list", s) for s in opts.steps_list] if opts.steps_list else None
    inputs = [_plan(run_dir, opts, log) for run_dir in opts.runs]
    # clip runs get an animated grid
    grids = [name[:-4] + ".gif" if isinstance(item, _Planned) and item.run.cfg.makes_clips
             else name for name, item in zip(grids, inputs)]
    _refuse_folders(out, grids)
    planned = [p for p in inputs if isinstance(p, _Planned)]
    rules = _halt_rules(opts, inputs, evaluate)
    if rules:
        _refuse_folders(out, STUDY_FILES)
    evaluator = _evaluator(opts, planned) if evaluate and planned else None
    judge = _judge(evaluator, planned[0]) if rules else None
    runs = []
    for item, label, grid_name in zip(inputs, labels, grids):
        if not isinstance(item, _Planned):  # the runs of an earlier anytime.json
            runs += item
            continue
        cfg = item.run.cfg
        _grid(item, opts, out / grid_name, log)
        if not evaluate:
            continue
        y = torch.arange(cfg.model.num_classes).repeat_interleave(per_class)
        fixed = {}
        runs.append(_sweep_run(item, label, y, step_list, evaluator, opts, log, judge, fixed))
        if rules:
            _study(item, rules, y, fixed, judge, evaluator, opts, out, runs[-1], log)
    if not runs:
        return None
    from .atomic import write_text_atomic
    from .plots import plot_anytime, plot_pareto

    table = write_text_atomic(out / "anytime.json", json.dumps({"runs": runs}, indent=2))
    log(f"wrote {table}")
    log(f"wrote {plot_anytime(runs, out / 'anytime_quality.png')} (quality against loops and GFLOPs per sample)")
    log(f"wrote {plot_pareto(runs, out / 'anytime_pareto.png')} (every point and each run's Pareto front "
        f"against GFLOPs per sample)")
    return table


STUDY_FILES = ("adaptive.json", "adaptive_curves.png", "adaptive_heat.png", "adaptive_gap.png")


def _halt_rules(opts: AnytimeOptions, inputs: list, evaluate: bool) -> list:
    """--halt-list -> HaltRules with one cap, checked against the one run it studies (empty without it)."""
    if not opts.halt_list:
        if opts.halt_cap is not None:
            raise ConfigError("--halt-cap caps the rules of --halt-list: pass --halt-list RULE:τ ... too")
        return []
    from .sampling.adaptive import FAMILY_RULES, HaltRule

    if not evaluate:
        raise ConfigError("--halt-list studies halting rules against fixed loop counts for --eval: add --eval and "
                          "--classifier CLS_DIR")
    if len(inputs) != 1 or not isinstance(inputs[0], _Planned):
        raise ConfigError("--halt-list studies one trained run: pass exactly one run folder (overlay other runs "
                          "by passing the anytime.json of this call to a later `elt anytime`)")
    item = inputs[0]
    run, cfg = item.run, item.run.cfg
    if cfg.makes_clips:
        raise ConfigError(f"--halt-list scores image runs in a dataset classifier's features; {run.run_dir} makes "
                          f"clips: sample it with `elt sample --halt` and score the clips with `elt eval`")
    if item.uncond is not None or item.uncond_latents is not None or item.guide != "cfg":
        raise ConfigError("--halt-list decides the loops of both guidance rows together: drop --uncond-loops, "
                          "--uncond-latents and --guidance autoguidance")
    if item.latent_counts:
        raise ConfigError("--halt-list halts at the full latent budget: drop --latents-list (sweep the latents in "
                          "another `elt anytime` call)")
    cap = cfg.train_loops if opts.halt_cap is None else opts.halt_cap
    rules = [HaltRule.parse(text, cap) for text in opts.halt_list]
    for rule in rules:
        if rule.kind not in FAMILY_RULES[cfg.family]:
            raise ConfigError(f"--halt-list {rule.kind} is not a rule of the {cfg.family} family: use "
                              f"{' or '.join(FAMILY_RULES[cfg.family])}")
    if item.loop_counts[-1] < cap:
        raise ConfigError(f"--halt-list compares with fixed L = 1 .. {cap} (the cap): --max-loops must be at "
                          f"least {cap}")
    at_least_1("--calib-n", opts.calib_n)
    at_least_1("--boot", opts.boot)
    if not opts.classifier:
        raise ConfigError("--halt-list bootstraps FD in a dataset classifier's features: pass --classifier CLS_DIR "
                          "(made by `elt eval train-classifier DATA --out CLS_DIR`)")
    if opts.features and "classifier" not in opts.features:
        raise ConfigError("--halt-list bootstraps FD in the classifier's features: add classifier to --features")
    return rules


def _judge(evaluator, item: _Planned):
    """Per-sample classifier features against the evaluator's own reference (the same FD as anytime.json)."""
    from .adaptive_study import Judge

    m = item.run.cfg.model
    return Judge(evaluator.classifier, evaluator.reference_features(m.image_size, m.channels, "classifier"))


def _study(item: _Planned, rules: list, labels: torch.Tensor, fixed: dict, judge, evaluator, opts: AnytimeOptions,
           out: Path, entry: dict, log) -> None:
    """The adaptive-exit study of one run: its adaptive and static rows join the run's any-time rows (the
    planner's candidates); adaptive.json and three plots go to `out`."""
    from .adaptive_plots import plot_curves, plot_gap, plot_heat
    from .adaptive_study import StudySettings, run_study
    from .atomic import write_text_atomic

    run = item.run
    settings = StudySettings(run.sampler, run.model, labels, run.cfg.model.num_classes, item.steps, item.guidance,
                             opts.seed, opts.precision, opts.calib_n, opts.boot)
    study, rows = run_study(settings, rules, fixed, judge, evaluator.evaluate, log)
    entry["results"] += rows
    study = {"run": str(run.run_dir), **study}
    log(f"wrote {write_text_atomic(out / 'adaptive.json', json.dumps(study, indent=1) + chr(10))}")
    log(f"wrote {plot_curves(study, out / 'adaptive_curves.png')} (adaptive, static, shuffled against fixed L)")
    log(f"wrote {plot_heat(study, out / 'adaptive_heat.png')} (exit loop per sampling step)")
    if study["correlation"]:
        log(f"wrote {plot_gap(study, out / 'adaptive_gap.png')} (rule value against the true gap)")


def _refuse_folders(out: Path, names) -> None:
    """A folder where an output file goes is refused before anything is sampled."""
    for name in names:
        if (out / name).is_dir():
            raise ConfigError(f"--out {out} holds a folder named {name}, where a file is written: move it away "
                              f"or choose another --out folder")


def _plan(run_dir: str, opts: AnytimeOptions, log) -> _Planned | list[dict]:
    """An earlier anytime.json -> its runs; a run folder -> the loaded run with its loop counts and settings."""
    from .anytime import read_table

    if Path(run_dir).suffix == ".json":  # an earlier anytime.json: overlay its runs without sampling again
        return read_table(run_dir)
    run = load_run(run_dir)
    cfg = run.cfg
    # a baseline (N·L unique blocks) has one trained depth: looping its whole stack is no trained model
    default_last = 1 if cfg.train.mode == "baseline" else cfg.train_loops + 2
    last = at_least_1("--max-loops", default_last if opts.max_loops is None else opts.max_loops)
    if cfg.train.mode == "baseline" and last > 1:
        log(f"note: {run_dir} is a baseline run; loops > 1 repeat its whole {cfg.model_blocks}-block stack, "
            "a depth it was never trained at")
    steps, guidance = sampling_settings(cfg, opts.steps, opts.cfg)
    uncond = check_uncond_loops(opts.uncond_loops, guidance)
    latents = opts.latents_list
    if latents or opts.uncond_latents is not None:
        if getattr(run.model, "latent", None) is None:
            raise ConfigError(f"{run_dir} has no latent interface (model.latent), so --latents-list / "
                              f"--uncond-latents do not apply: sweep it in its own `elt anytime` call and pass "
                              f"its anytime.json here to overlay it")
        j_max = run.model.latent.interface.j_max
        bad = [J for J in latents or [] if not 1 <= J <= j_max]
        if bad:
            raise ConfigError(f"--latents-list values must be integers in 1..{j_max} (the latents per group of "
                              f"{run_dir}), got {bad[0]}")
        check_latent_budget(run.model, 1, None, guidance, None, opts.uncond_latents)
    guided = None if uncond is None and opts.uncond_latents is None else "given"
    guide, kind = check_guidance_kind(opts.guidance, guidance, None, guided)
    return _Planned(run, list(range(1, last + 1)), steps, guidance, uncond, list(latents) if latents else None,
                    opts.uncond_latents, guide, kind)


def _clip_evaluator(opts: AnytimeOptions, planned: list[_Planned]):
    """The video evaluator for clip runs: needs a video classifier folder; every run must make clips."""
    from .eval.video_classifier import is_video_judge
    from .eval.video_report import VideoQualityEvaluator, wants_fvd

    images = [str(p.run.run_dir) for p in planned if not p.run.cfg.makes_clips]
    if images:
        raise ConfigError(f"{images[0]} makes images while other runs make clips: score them in separate "
                          f"`elt anytime` calls")
    if not opts.classifier or not is_video_judge(opts.classifier):
        raise ConfigError("clip runs are scored with a video classifier: pass --classifier VIDEO_CLS_DIR made by "
                          "`elt eval train-video-classifier moving-digits --out VIDEO_CLS_DIR`")
    cfg = planned[0].run.cfg
    return VideoQualityEvaluator(opts.ref or cfg.data.name, opts.classifier, cfg.data.label or "digit",
                                 opts.seed, fvd=wants_fvd(opts.features))


def _evaluator(opts: AnytimeOptions, planned: list[_Planned]):
    """The quality evaluator, with the classifier and the reference data checked against every run."""
    from .eval.report import QualityEvaluator, default_features

    if any(p.run.cfg.makes_clips for p in planned):
        return _clip_evaluator(opts, planned)
    first_cfg = planned[0].run.cfg
    # --classifier alone (no --eval) keeps to the fast classifier metrics
    features = default_features(opts.features, opts.classifier) if opts.eval or opts.features else ("classifier",)
    evaluator = QualityEvaluator(opts.ref or first_cfg.data.name, features, opts.classifier, opts.inception,
                                 opts.seed)
    k = evaluator.classifier.num_classes if evaluator.classifier is not None else None
    for item in planned:
        if k is not None and item.run.cfg.model.num_classes > k:
            raise DataError(f"{item.run.run_dir} samples {item.run.cfg.model.num_classes} classes but the "
                            f"classifier {opts.classifier} knows {k}: pass a classifier trained on the run's data "
                            f"set (`elt eval train-classifier DATA --out CLS_DIR`)")
    # read the reference data now: a bad --ref must fail before any grid is written
    shapes = {(item.run.cfg.model.image_size, item.run.cfg.model.channels) for item in planned}
    for size, channels in sorted(shapes):
        try:
            evaluator.load_reference(size, channels)
        except DataError as e:
            where = f"--ref {opts.ref}" if opts.ref else f"the run's data set {first_cfg.data.name}"
            raise DataError(f"{where} cannot serve as reference data ({e}): pass --ref mnist, digits or an image "
                            f"folder (one sub-folder per class)") from None
    return evaluator


def _grid(item: _Planned, opts: AnytimeOptions, path: Path, log) -> None:
    """A row per class, a column per loop count (the same noise in every column)."""
    from .anytime import guiding_budget
    from .grid import loop_sheet

    k = item.run.cfg.model.num_classes
    columns = [generate(item.run.sampler, torch.arange(k), L, item.steps, item.guidance, opts.seed, None,
                        opts.precision, "", uncond=guiding_budget(L, None, item.uncond, item.uncond_latents),
                        guide=item.guide) for L in tqdm(item.loop_counts, desc="any-time grid")]
    if columns[0].ndim == 5:  # clips (K, T, H, W, C): one animated grid
        from .video_out import loop_gif

        loop_gif(columns, item.loop_counts, path)
    else:
        loop_sheet(columns, item.loop_counts, path)
    log(f"wrote {path} (rows: classes 0..{k - 1}; columns: loops {item.loop_counts}; trained "
        f"L_max={item.run.cfg.train_loops})")


def _sweep_run(item: _Planned, label: str, labels: torch.Tensor, step_list: list[int] | None, evaluator,
               opts: AnytimeOptions, log, judge=None, fixed: dict | None = None) -> dict:
    """One run's anytime.json entry: a scored row per (steps, loops). With a `judge`, `fixed` receives the
    per-sample Points of the loop counts at the run's sampling steps (the adaptive study's fixed curve)."""
    from .anytime import guiding_budget, run_name, sweep

    run, cfg = item.run, item.run.cfg

    def sample(y, budget, n_steps):
        J = budget.latents if isinstance(budget, Budget) else None
        return generate(run.sampler, y, budget, n_steps, item.guidance, opts.seed, None, opts.precision,
                        uncond=guiding_budget(Budget.of(budget).loops, J, item.uncond, item.uncond_latents),
                        guide=item.guide)

    def keep(row: dict, images: torch.Tensor) -> None:
        if judge is not None and row["steps"] == item.steps:
            L = row["loops"]
            fixed[L] = judge.point(f"fixed L={L}", "fixed", images, labels, row["gflops_per_sample"], loops=L)

    rows = sweep(run.model, sample, evaluator, labels, item.loop_counts, step_list or [item.steps], item.guidance,
                 log=log, uncond=item.uncond, latent_counts=item.latent_counts, uncond_latents=item.uncond_latents,
                 on_images=keep)
    return {"run": str(run.run_dir), "name": run_name(label, cfg.train.mode), "mode": cfg.train.mode,
            "trained_loops": cfg.train_loops, "cfg": item.guidance, "uncond_loops": item.uncond,
            "uncond_latents": item.uncond_latents, "guidance": item.guidance_kind, "seed": opts.seed,
            "samples_per_point": len(labels), "results": rows}
