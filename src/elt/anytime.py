"""Any-time sweep: sample one trained run at every loop count (and sampling-step count) and score each.

One row per (loops, steps): the quality metrics of `eval.report.QualityEvaluator`, the counted forward
GFLOPs per sample (network evaluations × FLOPs of one forward at batch 1) and the sampling time.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch


@torch.no_grad()
def forward_flops(model: torch.nn.Module, loops: int) -> int:
    """FLOPs of one forward pass for one sample at `loops`, counted by torch.utils.flop_counter."""
    from .bench.flops import count_flops

    inputs = model.example_inputs(1)
    return count_flops(lambda: model(*inputs, loops=loops))[0]


def gflops_per_sample(model: torch.nn.Module, loops: int, steps: int, guidance: float) -> float:
    """Network evaluations per sample (steps, ×2 with classifier-free guidance) × forward FLOPs, in GFLOPs."""
    evaluations = steps * (2 if guidance != 1 else 1)
    return evaluations * forward_flops(model, loops) / 1e9


def sweep(model, sample: Callable[[torch.Tensor, int, int], torch.Tensor], evaluator, labels: torch.Tensor,
          loop_counts: list[int], step_counts: list[int], guidance: float, log=print) -> list[dict]:
    """sample(labels, loops, steps) -> uint8 (N, H, W, C); evaluator.evaluate(images, labels) -> metrics."""
    from .eval.report import headline

    rows = []
    for steps in step_counts:
        for loops in loop_counts:
            t0 = time.perf_counter()
            images = sample(labels, loops, steps)
            dt = time.perf_counter() - t0
            metrics = evaluator.evaluate(images, labels)
            row = {"loops": loops, "steps": steps, "gflops_per_sample": gflops_per_sample(model, loops, steps,
                                                                                          guidance),
                   "sample_seconds": round(dt, 2), **headline(metrics), "report": metrics}
            rows.append(row)
            log(f"L={loops} steps={steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in headline(metrics).items()
                                                         if k != "n") + f" ({len(labels)} samples, {dt:.1f} s)")
    return rows


def run_name(run_dir: str | Path, mode: str) -> str:
    return f"{mode} ({Path(run_dir).name})" if Path(run_dir).name != mode else mode
