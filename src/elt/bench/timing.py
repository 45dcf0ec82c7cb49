"""Interleaved timing (A rep 1, B rep 1, C rep 1, A rep 2, …) and robust summaries (median, spread).

Interleaving puts the measurements of the compared models next to each other in time, so slow drifts of the
machine (other jobs, clock changes, heat) hit every model alike and largely cancel in per-rep ratios.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Seconds per call of one task: one entry per timed rep (each rep = `inner` back-to-back calls)."""

    times: list[float] = field(default_factory=list)
    inner: int = 1


def interleaved(tasks: Mapping[str, Callable[[], object]], reps: int, warmup: int = 1,
                sync: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.perf_counter,
                min_rep_s: float = 0.0) -> dict[str, Timing]:
    """Time every task `reps` times, in the order task1, task2, …, task1, task2, … (after `warmup` rounds).

    Each warm-up round calls each task once; the last warm-up call sets `inner`, the number of calls per
    timed rep, so that a rep lasts about `min_rep_s` (at least 1 call). `sync` runs before and after each
    timed rep (e.g. torch.cuda.synchronize). Returns {task: Timing} with seconds *per call*.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    out = {name: Timing() for name in tasks}
    for _ in range(warmup):
        for name, fn in tasks.items():
            sync()
            t0 = clock()
            fn()
            sync()
            dt = clock() - t0
            res = out[name]
            res.inner = max(1, math.ceil(min_rep_s / dt)) if dt > 0 and min_rep_s > 0 else 1
    for _ in range(reps):
        for name, fn in tasks.items():
            res = out[name]
            sync()
            t0 = clock()
            for _ in range(res.inner):
                fn()
            sync()
            res.times.append((clock() - t0) / res.inner)
    return out


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median and spread (min, max, interquartile range q1..q3) of a list of numbers."""
    if not values:
        raise ValueError("cannot summarize an empty list")
    xs = sorted(float(v) for v in values)
    q1, q3 = (statistics.quantiles(xs, n=4, method="inclusive")[i] for i in (0, 2)) if len(xs) > 1 else (xs[0],) * 2
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "q1": q1, "q3": q3, "n": len(xs)}


def per_rep_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a[i] / b[i] for each interleaved rep i (the two lists come from the same `interleaved` call)."""
    if len(a) != len(b):
        raise ValueError(f"ratio of series of different lengths ({len(a)} vs {len(b)})")
    return [x / y for x, y in zip(a, b)]
