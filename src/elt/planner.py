"""The compute planner: the best measured setting of a run within a compute budget, and the Pareto front.

`elt plan RUN_OR_ANYTIME_JSON --gflops X [--metric fd_classifier] [--json FILE]` reads the run's measured
any-time results (`elt anytime RUN --eval --out DIR` writes DIR/anytime.json: loops, and latents, steps and the
guidance budget where the sweep had them, each with counted GFLOPs per sample and quality) and returns the
setting with the best quality whose GFLOPs per sample are at most X. Only measured settings are candidates:
nothing is interpolated or guessed, and a budget below every measurement is an error that says which
measurement to add.
"""
from __future__ import annotations

from pathlib import Path

from .anytime import pareto_front, read_table
from .errors import ConfigError
from .plots import METRICS

SETTING_KEYS = ("loops", "latents", "steps", "uncond_loops", "uncond_latents")
LOWER_BETTER = {key: lower for key, _, lower in METRICS}


def find_table(path: str | Path) -> Path:
    """An anytime.json, or a run folder holding anytime/anytime.json (the README's `--out RUN/anytime`)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "anytime.json", path / "anytime" / "anytime.json"):
            if candidate.is_file():
                return candidate
        raise ConfigError(f"{path} holds no anytime.json (nor anytime/anytime.json): measure the run first with "
                          f"`elt anytime {path} --eval --out {path / 'anytime'}`")
    return path


def candidates(runs: list[dict]) -> list[dict]:
    """Every measured point of every run, with the run-level guidance settings merged in."""
    out = []
    for run in runs:
        for row in run["results"]:
            point = {"run": run.get("run", run["name"]), "name": run["name"], "cfg": run.get("cfg"),
                     "guidance": run.get("guidance")}
            point.update({k: run.get(k) for k in ("uncond_loops", "uncond_latents") if run.get(k) is not None})
            point.update(row)
            out.append(point)
    return out


def choose_metric(points: list[dict], metric: str | None) -> str:
    have = [key for key, *_ in METRICS if any(key in p for p in points)]
    if metric is None:
        for preferred in ("fd_classifier", "fid", "fd_video", "class_consistency"):
            if preferred in have:
                return preferred
        return have[0]
    if metric not in have:
        raise ConfigError(f"--metric {metric}: the table measured {', '.join(have)}; pick one of those")
    return metric


def plan(points: list[dict], budget: float, metric: str) -> dict:
    """{"choice": the best point with GFLOPs per sample <= budget, "front": the Pareto front, "metric", "budget"}."""
    if not budget > 0:
        raise ConfigError(f"--gflops must be a budget > 0 (GFLOPs per sample), got {budget}")
    lower = LOWER_BETTER[metric]
    scored = [p for p in points if metric in p]
    within = [p for p in scored if p["gflops_per_sample"] <= budget]
    if not within:
        cheapest = min(scored, key=lambda p: p["gflops_per_sample"])
        raise ConfigError(f"no measured setting costs at most {budget:g} GFLOPs per sample: the cheapest, "
                          f"{describe(cheapest)}, costs {cheapest['gflops_per_sample']:.4g}; raise --gflops, or "
                          f"measure cheaper settings (e.g. `elt anytime RUN --eval --steps-list ...` with fewer "
                          f"steps)")
    best = min(within, key=lambda p: ((p[metric] if lower else -p[metric]), p["gflops_per_sample"]))
    return {"choice": best, "front": pareto_front(scored, metric, lower), "metric": metric, "budget": budget}


def describe(point: dict) -> str:
    """'name: loops=2 steps=10 cfg=3'; a halting rule's point reads 'halt=sampler:0.008 cap=4 (mean loops
    2.7)', a static schedule's 'loops=3,3,2,...'."""
    if point.get("halt") is not None:
        parts = [f"halt={point['halt']} cap={point.get('halt_cap')} (mean loops {point['loops']:.3g})"]
        parts += [f"{k}={point[k]}" for k in SETTING_KEYS if k != "loops" and point.get(k) is not None]
    elif point.get("schedule") is not None:
        parts = ["loops=" + ",".join(str(L) for L in point["schedule"])]
        parts += [f"{k}={point[k]}" for k in SETTING_KEYS if k != "loops" and point.get(k) is not None]
    else:
        parts = [f"{k}={point[k]}" for k in SETTING_KEYS if point.get(k) is not None]
    if point.get("cfg") not in (None, 1, 1.0):
        parts.append(f"cfg={point['cfg']:g}")
    return f"{point['name']}: " + " ".join(parts)


def load_points(path: str | Path) -> tuple[Path, list[dict]]:
    table = find_table(path)
    return table, candidates(read_table(table))
