"""One training step under DDP, FSDP and FSDP + activation checkpointing: time (interleaved) and peak memory.

    torchrun --nproc_per_node=2 benchmarks/parallel_step.py [CONFIG] [--steps 10] [--out FILE.json]

Time: one Trainer per strategy on the same config (default configs/bench_d384.yaml: a dim-384 4N x 4L flow model,
ILSD, bf16 autocast, batch 128 split over the ranks), their steps run in turn (A B C A B C ...) so machine
noise hits the three alike; medians with [min, max] and the ratio to DDP. Memory: each strategy once more in a
fresh process group of its own (`--only NAME`, launched by rank 0 after the timing), reporting rank 0's peak
resident memory during training minus its resident memory before the trainer was built (the process high-water
mark: weights, gradients, optimizer state, EMA, activations, communication buffers and allocator overhead).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch.distributed as dist

from elt.config import load_config
from elt.train.trainer import Trainer

STRATEGIES = {"ddp": ["train.parallel=ddp"], "fsdp": ["train.parallel=fsdp"],
              "fsdp+ckpt": ["train.parallel=fsdp", "train.checkpoint_activations=true"]}


def rss_bytes() -> int:
    """Current resident memory of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(config: str, name: str, root: Path) -> Trainer:
    cfg = load_config(config, STRATEGIES[name] + ["train.log_every=1000", "train.ckpt_every=100000"])
    return Trainer(cfg, root / name.replace("+", "_"), progress=False)


def only(args) -> None:
    """One strategy in its own process group: print rank 0's peak memory growth as one JSON line."""
    before = rss_bytes()
    tr = build(args.config, args.only, Path(tempfile.mkdtemp(prefix="parallel-step-")))
    for step in range(3):
        tr.train_step(step)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    if tr.dist.is_main:
        print(json.dumps({"strategy": args.only, "peak_growth_bytes": peak - before}))
    tr.close()
    dist.destroy_process_group()


def memory_of(name: str, config: str) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK")}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_addr=127.0.0.1", f"--master_port={port}", __file__, config, "--only", name],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])["peak_growth_bytes"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="configs/bench_d384.yaml")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per strategy (after 2 warm-up steps)")
    ap.add_argument("--only", choices=list(STRATEGIES), help=argparse.SUPPRESS)
    ap.add_argument("--out", help="write the figures as JSON")
    args = ap.parse_args()
    if args.only:
        return only(args)
    root = Path(tempfile.mkdtemp(prefix="parallel-step-"))
    trainers = {name: build(args.config, name, root) for name in STRATEGIES}
    main_rank = trainers["ddp"].dist.is_main
    times = {n: [] for n in trainers}
    for step in range(args.steps + 2):
        for name, tr in trainers.items():
            dist.barrier()
            start = time.perf_counter()
            tr.train_step(step)
            dist.barrier()
            if step >= 2:
                times[name].append(time.perf_counter() - start)
    world = dist.get_world_size()
    for tr in trainers.values():
        tr.close()
    dist.destroy_process_group()
    if not main_rank:
        return
    report = {"config": args.config, "world": world, "steps": args.steps, "strategies": {}}
    peaks = {name: memory_of(name, args.config) for name in STRATEGIES}
    base_t, base_m = statistics.median(times["ddp"]), peaks["ddp"]
    print(f"{'strategy':<10} {'step s: median [min, max]':<28} {'vs ddp':>7} {'peak MB (rank 0)':>17} {'vs ddp':>7}")
    for name in STRATEGIES:
        t, m = times[name], peaks[name]
        med = statistics.median(t)
        report["strategies"][name] = {"step_s": t, "step_s_median": med, "peak_growth_bytes": m,
                                      "time_ratio": med / base_t, "memory_ratio": m / base_m}
        print(f"{name:<10} {med:.3f} [{min(t):.3f}, {max(t):.3f}]{'':<8} {med / base_t:>7.2f} {m / 2**20:>17.1f} "
              f"{m / base_m:>7.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
