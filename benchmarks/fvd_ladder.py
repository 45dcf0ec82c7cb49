"""FVD sanity ladder on moving digits: real test clips, then the same clips blurred, frame-shuffled and replaced
by noise, each against the same real train clips. A working FVD orders them real < blurred < shuffled < noise.

    python benchmarks/fvd_ladder.py --n 64 --reference 128 --out docs/results/moving_digits/fvd_ladder.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F


def blur(clips: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """uint8 (N, T, H, W, 1) -> the same with every frame Gaussian-blurred (separable, radius 3σ)."""
    r = int(3 * sigma + 0.5)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).reshape(1, 1, -1)
    n, t, h, w, c = clips.shape
    x = clips.float().permute(0, 1, 4, 2, 3).reshape(-1, 1, h, w)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k[:, :, None, :])
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k[:, :, :, None])
    return x.round().clamp(0, 255).to(torch.uint8).reshape(n, t, c, h, w).permute(0, 1, 3, 4, 2).contiguous()


def shuffle_frames(clips: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Every clip's frames in a random order (never the identity)."""
    g = torch.Generator().manual_seed(seed)
    out = clips.clone()
    for i in range(len(clips)):
        perm = torch.randperm(clips.shape[1], generator=g)
        while bool((perm == torch.arange(len(perm))).all()):
            perm = torch.randperm(clips.shape[1], generator=g)
        out[i] = clips[i, perm]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="moving-digits")
    p.add_argument("--n", type=int, default=128, help="clips per rung")
    p.add_argument("--reference", type=int, default=256, help="real train clips of the reference")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", help="write the table and protocol as JSON")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from elt.data import load_dataset
    from elt.eval.i3d import I3DFeatures, fvd

    train, test = load_dataset(a.data, "train"), load_dataset(a.data, "test")
    ref = train.get_batch(torch.arange(a.reference))[0].movedim(1, -1).contiguous()  # (R, T, H, W, C)
    real = test.get_batch(torch.arange(a.n))[0].movedim(1, -1).contiguous()
    noise = torch.randint(0, 256, real.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    rungs = {"real vs real": real, "blurred (σ = 1 px)": blur(real), "frame-shuffled": shuffle_frames(real),
             "uniform noise": noise}
    from elt.eval.reference import cached_features

    feats = I3DFeatures()
    t0 = time.perf_counter()
    ref_f = cached_features(feats.name, ref, lambda c: feats(c, desc="i3d reference"))  # shared with `elt eval`
    rows = []
    for name, clips in rungs.items():
        value = fvd(ref_f, feats(clips, desc=f"i3d {name}"))
        rows.append({"rung": name, "fvd": value})
        print(f"{name:22s} FVD {value:9.2f}")
    ordered = all(rows[i]["fvd"] < rows[i + 1]["fvd"] for i in range(len(rows) - 1))
    record = {"rows": rows, "ordered": ordered, "seconds": round(time.perf_counter() - t0, 1),
              "protocol": {"data": a.data, "clip_shape": list(train.image_shape), "n": a.n,
                           "reference": f"first {a.reference} train clips", "samples": f"first {a.n} test clips",
                           "features": feats.protocol, "threads": torch.get_num_threads()}}
    print(f"ordered real < blurred < shuffled < noise: {ordered} ({record['seconds']} s)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
