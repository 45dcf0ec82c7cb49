"""The compute planner: the best measured setting of a run within a compute budget, and the Pareto front.

`elt plan RUN_OR_ANYTIME_JSON --gflops X | --seconds X [--metric fd_classifier] [--json FILE] [--plot FILE]`
reads the run's measured any-time results (`elt anytime RUN --eval --out DIR` writes DIR/anytime.json: loops,
and latents, steps, the guidance budget and halting rules or static per-step schedules where the sweep had
them, each with counted GFLOPs per sample, the measured sampling time and quality) and returns the setting with
the best quality whose cost per sample is at most X. Only measured settings are candidates: nothing is
interpolated or guessed, and a budget below every measurement is an error that says which measurement to add.
Seconds per sample are the sweep's own wall time over its sample count: they hold on the machine (and load)
that made the table.
"""
from __future__ import annotations

from pathlib import Path

from .anytime import pareto_front, read_table
from .errors import ConfigError
from .plots import METRICS

SETTING_KEYS = ("loops", "latents", "steps", "uncond_loops", "uncond_latents")
COSTS = {"gflops_per_sample": ("--gflops", "GFLOPs per sample"), "seconds_per_sample": ("--seconds",
                                                                                          "seconds per sample")}
LOWER_BETTER = {key: lower for key, _, lower in METRICS}


def table_in(folder: Path) -> Path | None:
    """The any-time table a folder holds: its anytime.json, or anytime/anytime.json (the README's `--out
    RUN/anytime`); None when it holds neither."""
    return next((c for c in (folder / "anytime.json", folder / "anytime" / "anytime.json") if c.is_file()), None)


def find_table(path: str | Path) -> Path:
    """An anytime.json, or a run folder holding anytime/anytime.json (the README's `--out RUN/anytime`)."""
    path = Path(path)
    if path.is_dir():
        table = table_in(path)
        if table is not None:
            return table
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
            if isinstance(row.get("sample_seconds"), (int, float)) and run.get("samples_per_point"):
                point["seconds_per_sample"] = row["sample_seconds"] / run["samples_per_point"]
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


def plan(points: list[dict], budget: float, metric: str, cost: str = "gflops_per_sample") -> dict:
    """{"choice": the best point with `cost` (GFLOPs or seconds per sample) <= budget, "front": the Pareto front,
    "metric", "budget", "cost"}."""
    flag, unit = COSTS[cost]
    if not budget > 0:
        raise ConfigError(f"{flag} must be a budget > 0 ({unit}), got {budget}")
    lower = LOWER_BETTER[metric]
    scored = [p for p in points if metric in p and cost in p]
    if not scored:
        raise ConfigError(f"the table has no {unit} for its {metric} points (an anytime.json without sampling "
                          f"times): measure again with `elt anytime RUN --eval`, or plan with --gflops")
    within = [p for p in scored if p[cost] <= budget]
    if not within:
        cheapest = min(scored, key=lambda p: p[cost])
        raise ConfigError(f"no measured setting costs at most {budget:g} {unit}: the cheapest, "
                          f"{describe(cheapest)}, costs {cheapest[cost]:.4g}; raise {flag}, or measure cheaper "
                          f"settings (e.g. `elt anytime RUN --eval --steps-list ...` with fewer steps)")
    best = min(within, key=lambda p: ((p[metric] if lower else -p[metric]), p[cost]))
    return {"choice": best, "front": pareto_front(scored, metric, lower, cost), "metric": metric, "budget": budget,
            "cost": cost}


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
