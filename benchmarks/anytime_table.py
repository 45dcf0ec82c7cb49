"""Print a markdown table of class-consistency per loop count from one or more `anytime.json` files.

    python benchmarks/anytime_table.py runs/*/anytime/anytime.json
"""
from __future__ import annotations

import json
import sys


def main(paths: list[str]) -> None:
    reports = [json.load(open(p)) for p in paths]
    loops = sorted({r["loops"] for rep in reports for r in rep["results"]})
    print("| run (mode, trained L) | " + " | ".join(f"L={L}" for L in loops) + " |")
    print("|---|" + "---|" * len(loops))
    for rep in reports:
        acc = {r["loops"]: r["class_consistency"] for r in rep["results"]}
        cells = [f"{100 * acc[L]:.1f}%" if L in acc else "–" for L in loops]
        print(f"| {rep['mode']} (L_max={rep['trained_loops']}) | " + " | ".join(cells) + " |")
    rep = reports[0]
    print(f"\nprotocol: {rep['samples_per_loop']} samples per loop count ({rep['samples_per_loop'] // 10} per class), "
          f"{rep['steps']} Euler steps, CFG {rep['cfg']}, seed {rep['seed']}, digit-classifier {rep['classifier']}")


if __name__ == "__main__":
    main(sys.argv[1:])
