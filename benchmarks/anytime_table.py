"""Print markdown tables from one or more `anytime.json` files (written by `elt anytime --eval`).

    python benchmarks/anytime_table.py DIR/anytime.json [DIR2/anytime.json ...]

One row per (run, loops[, latents], steps) with GFLOPs per sample and every metric the sweep recorded, then the
real-vs-real floors and the protocol of the first run.
"""
from __future__ import annotations

import json
import sys

COLUMNS = [("class_consistency", "class-cons.", lambda v: f"{100 * v:.1f}%"),
           ("fd_classifier", "FD-classifier", lambda v: f"{v:.1f}"),
           ("fid", "FID", lambda v: f"{v:.1f}"),
           ("inception_score", "IS", lambda v: f"{v:.2f}"),
           ("inception_precision", "P (Incep.)", lambda v: f"{v:.2f}"),
           ("inception_recall", "R (Incep.)", lambda v: f"{v:.2f}"),
           ("classifier_precision", "P (cls)", lambda v: f"{v:.2f}"),
           ("classifier_recall", "R (cls)", lambda v: f"{v:.2f}"),
           # clip runs (elt.eval.video_report)
           ("fd_video", "FD-video", lambda v: f"{v:.2f}"),
           ("frame_class_consistency", "frame class-cons.", lambda v: f"{100 * v:.1f}%"),
           ("identity_persistence", "persistence", lambda v: f"{100 * v:.1f}%"),
           ("clip_class_consistency", "clip class-cons.", lambda v: f"{100 * v:.1f}%"),
           ("motion_error_px", "motion err. (px)", lambda v: f"{v:.2f}"),
           ("direction_accuracy", "direction acc.", lambda v: f"{100 * v:.1f}%"),
           ("fvd", "FVD", lambda v: f"{v:.1f}")]


def table(paths: list[str]) -> str:
    runs = []
    for p in paths:
        with open(p) as f:
            runs += json.load(f)["runs"]
    if not runs:
        raise SystemExit("no runs in " + ", ".join(paths))
    rows = [(run, r) for run in runs for r in run["results"]]
    cols = [c for c in COLUMNS if any(c[0] in r for _, r in rows)]
    latents = any(r.get("latents") is not None for _, r in rows)  # a (loops × latents) sweep: a J column
    lines = ["| run | L | " + ("J | " if latents else "") + "steps | GFLOPs/sample | "
             + " | ".join(c[1] for c in cols) + " |",
             "|---|---|" + ("---|" if latents else "") + "---|---|" + "---|" * len(cols)]
    for run, r in rows:
        mark = " (L_max)" if r["loops"] == run["trained_loops"] else ""
        cells = [fmt(r[key]) if r.get(key) is not None else "–" for key, _, fmt in cols]
        j = (f"{r['latents'] if r.get('latents') is not None else '–'} | " if latents else "")
        lines.append(f"| {run['name']} | {r['loops']}{mark} | {j}{r['steps']} | {r['gflops_per_sample']:.2f} | "
                     + " | ".join(cells) + " |")
    first = rows[0][1]
    floors = {k[:-len("_real_floor")]: v for k, v in first.items() if k.endswith("_real_floor")}
    if floors:
        lines.append("\nreal-vs-real floors: " + ", ".join(f"{k} {v:.2f}" for k, v in floors.items()))
    run = runs[0]
    lines.append(f"protocol: {run['samples_per_point']} samples per point, CFG {run['cfg']}, seed {run['seed']}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1:]))
