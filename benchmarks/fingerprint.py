"""Behaviour fingerprint: short fixed-seed trainings of each family and samples at L = 1 and L_max, hashed.

Run it on two commits (e.g. before and after a refactor) on the same machine and compare the JSON: equal hashes
mean the training trajectory (every logged loss, the final weights, the EMA weights) and the samples are
bit-identical. It drives the command line only, so it measures the user-visible behaviour whatever the code
layout. Needs the MNIST cache (`elt data mnist`). One thread per process (the thread count can change the order
of float reductions). About 2 minutes on a 2-core CPU.

    python benchmarks/fingerprint.py --out fp.json [--work DIR] [--only flow,masked,diffusion]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

SMALL = ["model.dim=64", "model.heads=2", "train.batch_size=32", "train.log_every=10", "train.ckpt_every=100",
         "train.warmup_steps=20", "train.max_minutes=0", "train.seed=3"]
CASES = {
    "flow": ("configs/mnist_flow.yaml", SMALL + ["train.steps=150"], ["--steps", "8"]),
    "diffusion": ("configs/mnist_diffusion.yaml", SMALL + ["train.steps=150"], ["--steps", "16"]),
    "masked": ("configs/mnist_masked.yaml", SMALL + ["train.steps=150", "tokenizer.steps=60",
                                                      "tokenizer.max_minutes=0"], []),
}
LOG_KEYS = ("step", "loss", "gt_teacher", "gt_student", "distill", "student_loops", "lambda", "lr", "grad_norm")


def digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def elt(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # thread count can change float reduction order
    proc = subprocess.run([sys.executable, "-m", "elt.cli", *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"`elt {' '.join(args)}` failed:\n{proc.stderr[-3000:]}")


def state_digest(path: Path) -> str:
    """The training state (raw weights, optimizer moments, step) of a checkpoint's state.pt."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    flat = {}

    def walk(prefix, obj):
        if isinstance(obj, torch.Tensor):
            flat[prefix] = obj.float().numpy() if obj.dtype == torch.bfloat16 else obj.numpy()
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f"{prefix}/{i}", v)
        elif isinstance(obj, (int, float)) and not prefix.endswith("elapsed"):
            flat[prefix] = np.asarray(obj)

    walk("", {k: v for k, v in state.items() if k in ("model", "optimizer", "step")})
    return digest(flat)


def run_case(name: str, work: Path) -> dict:
    config, overrides, sample_args = CASES[name]
    run = work / name
    extra = [f"tokenizer.path={work / (name + '_tok')}"] if name == "masked" else []
    elt("train", config, *overrides, *extra, "--out", str(run))
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rows = [{k: r.get(k) for k in LOG_KEYS} for r in rows if "step" in r]
    ckpt = run / "checkpoints" / (run / "latest").read_text().strip()
    out = {"log": hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16], "last_loss": rows[-1]["loss"]}
    for f in sorted(ckpt.glob("*.safetensors")):
        out[f"ema_{f.name}"] = digest(load_file(str(f)))
    out["state"] = state_digest(ckpt / "state.pt")
    for f in sorted((run / "tokenizer").glob("*.safetensors")):
        out[f"tokenizer_{f.name}"] = digest(load_file(str(f)))
    for loops in ("1", None):
        npz = work / f"{name}_L{loops or 'max'}.npz"
        elt("sample", str(run), "--per-class", "10", "--seed", "5", "--out", str(npz), *sample_args,
            *(["--loops", loops] if loops else []))
        with np.load(npz) as z:
            out[f"samples_L{loops or 'max'}"] = digest({k: z[k] for k in z.files})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="FILE.json")
    ap.add_argument("--work", help="folder for the runs (default: a temporary one)")
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = {name: run_case(name, work) for name in args.only.split(",")}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
