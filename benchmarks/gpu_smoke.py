"""The first GPU run: the smallest paper configuration on synthetic latents, DDP and FSDP, compile off and on.

    torchrun --nproc_per_node=G benchmarks/gpu_smoke.py [--size ELT-DiT/2-1x32] [--batch 32] [--steps 200]
    (benchmarks/gpu_smoke.sh runs it on every visible GPU)

For each variant (ddp, fsdp) x (eager, compiled) it builds the trainer on a code folder of random latents of
the model's input shape (4x32x32 for ELT-DiT: nothing to download), runs `--warmup` steps, then times `--steps`
steps (CUDA-synchronised) and prints per variant: the median step time, samples/s, the model-FLOPs utilisation
(3 x the counted forward FLOPs with ILSD's two exits x samples/s, against the device's dense bf16 peak from its
datasheet when known, and against the matmul peak measured here in the precision the steps run), and the peak
memory per GPU. Precision is `auto`: bf16 on GPUs, fp32 on a CPU without bf16 units. On a CPU (`--device cpu`,
tiny `--size`) it runs the same path, for checking the script itself.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from elt.bench.flops import count_flops, matmul_peak
from elt.config import load_config
from elt.data import write_codes
from elt.models import build_model
from elt.models.registry import size_overrides
from elt.precision import resolve_precision
from elt.train.trainer import Trainer

DATASHEET_BF16 = {"H100 SXM": 989e12, "H100 80GB HBM3": 989e12, "H100 PCIe": 756e12, "H200": 989e12,
                  "A100": 312e12, "L40S": 362e12, "B200": 2250e12}  # dense (no sparsity) TFLOP/s


def datasheet_peak() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in DATASHEET_BF16.items() if k.replace(" SXM", "") in name), None)


def synthetic_latents(folder: Path, shape: tuple[int, ...], classes: int, n: int) -> Path:
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((n, *shape), dtype=np.float32).astype(np.float16)
    return write_codes(folder, codes, np.arange(n) % classes, [f"c{k}" for k in range(classes)], "latents",
                       "synthetic", "gaussian noise (gpu_smoke)")


def train_flops_per_sample(cfg) -> int:
    with torch.device("meta"):
        model = build_model(cfg)
        loops = cfg.train.loops
        exits = sorted({max(1, loops - 1), loops})
        return 3 * count_flops(lambda: model(*model.example_inputs(1), loops=loops, exits=exits))[0]


def run_variant(base: list[str], parallel: str, compile: bool, args, root: Path) -> dict:
    cfg = load_config(None, base + [f"train.parallel={parallel}", f"train.compile={str(compile).lower()}"])
    tr = Trainer(cfg, root / f"{parallel}-{'compiled' if compile else 'eager'}", progress=False)
    cuda = tr.dist.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.warmup + args.steps):
        sync()
        t0 = time.perf_counter()
        tr.train_step(step)
        sync()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    tr.close()
    return {"parallel": parallel, "compile": compile, "step_s": statistics.median(times),
            "step_s_range": [min(times), max(times)], "peak_bytes": peak, "cfg": cfg}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="ELT-DiT/2-1x32", help="a registry size (default: the smallest paper DiT)")
    ap.add_argument("--batch", type=int, default=32, help="samples per GPU")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation, autotuning)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--variants", nargs="+", default=["ddp", "ddp+compile", "fsdp", "fsdp+compile"])
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    shared = [tempfile.mkdtemp(prefix="gpu-smoke-") if rank == 0 else None]
    dist.broadcast_object_list(shared)  # one folder for every rank (one machine)
    root = Path(shared[0])
    probe = load_config(None, size_overrides(args.size) + ["family=" + ("masked" if "MaskGIT" in args.size else
                                                                      "flow")])
    if probe.family != "flow":
        raise SystemExit("gpu_smoke trains the flow family on synthetic latents: pass an ELT-DiT size")
    data = root / "latents"
    if rank == 0:
        synthetic_latents(data, tuple(probe.model.input_shape), probe.model.num_classes, 64 * args.batch * world)
    dist.barrier()
    base = ["family=flow", *size_overrides(args.size), f"data.name={data}", f"train.batch_size={args.batch * world}",
            "train.precision=auto", f"train.device={args.device}", "train.steps=100000", "train.log_every=100000",
            "train.ckpt_every=100000", "train.sample_every=0", "objective.kind=diffusion"]
    flops = train_flops_per_sample(load_config(None, base))
    device = torch.device("cuda") if torch.cuda.is_available() and args.device != "cpu" else torch.device("cpu")
    dtype = torch.bfloat16 if resolve_precision("auto", device) == "bf16" else torch.float32  # what the steps run
    measured = matmul_peak(device, dtype, max_n=8192 if device.type == "cuda" else 2048)["gflops"] * 1e9
    sheet = datasheet_peak()
    rows = []
    for variant in args.variants:
        parallel, _, extra = variant.partition("+")
        rows.append(run_variant(base, parallel, extra == "compile", args, root))
    if rank == 0:
        name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
        print(f"{args.size} on {world} x {name}: {flops / 3 / 1e9:.1f} GFLOPs per forward, batch {args.batch}/GPU, "
              f"{str(dtype).replace('torch.', '')}; matmul peak measured {measured / 1e12:.1f} TFLOP/s"
              + (f", datasheet {sheet / 1e12:.0f}" if sheet else ""))
        print(f"{'variant':<14} {'step s (median [min, max])':<28} {'samples/s':>10} {'MFU sheet':>10} "
              f"{'MFU meas.':>10} {'peak GiB/GPU':>13}")
        out = []
        for r in rows:
            per_s = args.batch * world / r["step_s"]
            achieved = flops * per_s / world
            mfu_sheet = achieved / sheet if sheet else None
            label = r["parallel"] + ("+compile" if r["compile"] else "")
            peak = f"{r['peak_bytes'] / 2**30:.1f}" if r["peak_bytes"] is not None else "n/a"
            sheet_s = "n/a" if mfu_sheet is None else f"{mfu_sheet:.1%}"
            print(f"{label:<14} {r['step_s']:.3f} [{r['step_s_range'][0]:.3f}, {r['step_s_range'][1]:.3f}]"
                  f"{'':<7} {per_s:>10.1f} {sheet_s:>10} {achieved / measured:>10.1%} {peak:>13}")
            out.append({k: v for k, v in r.items() if k != "cfg"} | {"samples_per_s": per_s, "mfu_datasheet": mfu_sheet,
                                                                      "mfu_measured_peak": achieved / measured})
        if args.json:
            Path(args.json).write_text(json.dumps({"size": args.size, "world": world, "device": name,
                                                   "train_flops_per_sample": flops, "rows": out}, indent=2) + "\n")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
