"""Any-time sweep: sample one trained run at every loop count (and sampling-step count) and score each.

One row per (loops, steps): the quality metrics of `eval.report.QualityEvaluator`, the counted forward
GFLOPs per sample (network evaluations × FLOPs of one forward at batch 1) and the sampling time.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from .budget import Budget


@torch.no_grad()
def forward_flops(model: torch.nn.Module, loops: int | Budget) -> int:
    """FLOPs of one forward pass for one sample at `loops` (a count or a Budget), counted by
    torch.utils.flop_counter."""
    from .bench.flops import count_flops

    device = next(model.parameters()).device  # a model on a GPU counts on the GPU
    inputs = tuple(t.to(device) for t in model.example_inputs(1))
    kwargs = Budget.of(loops).model_kwargs()
    return count_flops(lambda: model(*inputs, **kwargs))[0]


def gflops_per_sample(model: torch.nn.Module, loops: int | Budget, steps: int, guidance: float,
                      uncond: int | Budget | None = None) -> float:
    """Network evaluations per sample (steps, ×2 with classifier-free guidance) × forward FLOPs, in GFLOPs.
    With guidance, `uncond` (None: as `loops`) is the unconditional branch's budget."""
    if guidance == 1 or uncond is None or Budget.of(uncond) == Budget.of(loops):
        evaluations = steps * (2 if guidance != 1 else 1)
        return evaluations * forward_flops(model, loops) / 1e9
    return steps * (forward_flops(model, loops) + forward_flops(model, uncond)) / 1e9


def sweep(model, sample: Callable[[torch.Tensor, int | Budget, int], torch.Tensor], evaluator, labels: torch.Tensor,
          loop_counts: list[int], step_counts: list[int], guidance: float, log=print,
          uncond: int | None = None, latent_counts: list[int | None] | None = None,
          uncond_latents: int | None = None, on_images: Callable[[dict, torch.Tensor], None] | None = None
          ) -> list[dict]:
    """sample(labels, loops, steps) -> uint8 (N, H, W, C), `loops` a count or, with `latent_counts`, a
    Budget(L, J); evaluator.evaluate(images, labels) -> metrics. One row per (steps, latents, loops).
    `uncond` / `uncond_latents`: the guiding branch's loops / latents (None: as each row's), for the GFLOPs.
    `on_images(row, images)` sees every point's samples."""
    from .eval.report import headline as image_headline

    headline = getattr(evaluator, "headline", image_headline)  # clip evaluators name their own scalars
    rows = []
    for steps in step_counts:
        for J in latent_counts or [None]:
            for loops in loop_counts:
                budget = loops if J is None else Budget(loops, J)
                guide = guiding_budget(loops, J, uncond, uncond_latents)
                t0 = time.perf_counter()
                images = sample(labels, budget, steps)
                dt = time.perf_counter() - t0
                metrics = evaluator.evaluate(images, labels)
                row = {"loops": loops, **({} if J is None else {"latents": J}), "steps": steps,
                       "gflops_per_sample": gflops_per_sample(model, budget, steps, guidance, guide),
                       "sample_seconds": round(dt, 2), **headline(metrics), "report": metrics}
                rows.append(row)
                if on_images is not None:
                    on_images(row, images)
                at = f"L={loops}" + ("" if J is None else f" J={J}")
                log(f"{at} steps={steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in headline(metrics).items()
                                                      if k != "n") + f" ({len(labels)} samples, {dt:.1f} s)")
    return rows


def guiding_budget(loops: int, latents: int | None, uncond_loops: int | None, uncond_latents: int | None
                   ) -> int | Budget | None:
    """The guiding branch's budget at the point (loops, latents): None (as the point's) unless `uncond_loops`
    or `uncond_latents` is set; an unset one follows the point's."""
    if uncond_loops is None and uncond_latents is None:
        return None
    lw = loops if uncond_loops is None else uncond_loops
    jw = latents if uncond_latents is None else uncond_latents
    return lw if jw is None else Budget(lw, jw)


def pareto_front(rows: list[dict], key: str, lower_better: bool, cost: str = "gflops_per_sample") -> list[dict]:
    """The rows no cheaper-or-equal row beats on `key`: sorted by `cost` (GFLOPs or seconds per sample), each
    strictly better than every cheaper one (the best quality a compute budget can buy)."""
    front: list[dict] = []
    for r in sorted((r for r in rows if key in r and cost in r), key=lambda r: (r[cost],
                                                                                r[key] if lower_better else -r[key])):
        if not front or (r[key] < front[-1][key] if lower_better else r[key] > front[-1][key]):
            front.append(r)
    return front


def run_name(run_dir: str | Path, mode: str) -> str:
    return f"{mode} ({Path(run_dir).name})" if Path(run_dir).name != mode else mode


def read_table(path: str | Path) -> list[dict]:
    """The runs of an earlier anytime.json, checked so that a bad file is one DataError naming what is wrong."""
    import json

    from .data import DataError
    from .plots import METRICS

    path = Path(path)
    redo = "pass an anytime.json written by `elt anytime RUN_DIR --eval --out DIR`"
    if not path.is_file():
        raise DataError(f"{path} {'is a folder' if path.is_dir() else 'does not exist'}: {redo}")
    try:
        table = json.loads(path.read_text())
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{path} is not valid JSON ({' '.join(str(e).split())}): {redo}") from None
    runs = table.get("runs") if isinstance(table, dict) else None
    if not isinstance(runs, list):
        raise DataError(f"{path} has no \"runs\" list: {redo}")
    if not runs:
        raise DataError(f"{path} holds no runs (\"runs\" is empty): {redo}")
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise DataError(f"{path}: runs[{i}] is not an object with \"name\" and \"results\": {redo}")
        missing = [k for k in ("name", "results") if k not in run]
        if missing:
            raise DataError(f"{path}: runs[{i}] lacks {', '.join(map(repr, missing))}: {redo}")
        if not isinstance(run["name"], str):
            raise DataError(f"{path}: runs[{i}] \"name\" is not a string: {redo}")
        if run.get("trained_loops") is not None and not _is_number(run["trained_loops"]):
            raise DataError(f"{path}: runs[{i}] \"trained_loops\" is not a number: {redo}")
        if not isinstance(run["results"], list) or not run["results"]:
            raise DataError(f"{path}: runs[{i}] has no result rows: {redo}")
        for j, row in enumerate(run["results"]):
            lacks = [k for k in ("loops", "steps", "gflops_per_sample")
                     if not isinstance(row, dict) or not _is_number(row.get(k))]
            lacks += [k for k, *_ in METRICS if isinstance(row, dict) and k in row and not _is_number(row[k])]
            if lacks:
                raise DataError(f"{path}: runs[{i}].results[{j}] lacks a number for {', '.join(map(repr, lacks))}: "
                                f"{redo}")
    if not any(k in row for run in runs for row in run["results"] for k, *_ in METRICS):
        raise DataError(f"{path} holds no quality metrics (it was written without --eval): {redo}")
    return runs


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
