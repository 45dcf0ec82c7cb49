"""Any-time plots (matplotlib, headless): quality against loop count and against GFLOPs per sample, one line
per run, so ILSD, vanilla looping and the unique-layer baseline overlay as in the paper's Fig. 8."""
from __future__ import annotations

from pathlib import Path

# (key in a result row, axis label, lower is better)
METRICS = [("class_consistency", "class-consistency", False), ("fd_classifier", "FD (classifier features)", True),
           ("fid", "FID (Inception)", True), ("inception_precision", "precision (Inception)", False),
           ("inception_recall", "recall (Inception)", False),
           ("frame_class_consistency", "per-frame class-consistency", False),
           ("fd_video", "FD (video classifier)", True), ("motion_error_px", "motion error (px)", True),
           ("direction_accuracy", "direction accuracy", False), ("fvd", "FVD (I3D)", True)]


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("the any-time plots need matplotlib: pip install 'elt[eval]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _metrics_present(runs: list[dict]) -> list[tuple[str, str, bool]]:
    """The METRICS some result row holds (ValueError when none: the sweep ran without --eval)."""
    present = [m for m in METRICS if any(m[0] in r for run in runs for r in run["results"])]
    if not present:
        raise ValueError("no quality metrics in the results: run the sweep with --eval")
    return present


def plot_anytime(runs: list[dict], path: str | Path) -> Path:
    """runs: [{"name", "trained_loops", "results": [rows with loops, steps, gflops_per_sample, metrics]}]."""
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    present = _metrics_present(runs)
    fig, axes = plt.subplots(2, len(present), figsize=(4.2 * len(present), 7), squeeze=False)
    for j, (key, label, lower_better) in enumerate(present):
        for run in runs:
            by_steps: dict[tuple[int, int], list[dict]] = {}  # one line per (steps, latents per group)
            for r in run["results"]:
                if key in r and r.get("halt") is None and r.get("schedule") is None:  # fixed-L rows only
                    by_steps.setdefault((r["steps"], r.get("latents") or 0), []).append(r)
            n_steps = len({s for s, _ in by_steps})
            for (steps, latents), rows in sorted(by_steps.items()):
                rows.sort(key=lambda r: r["loops"])
                tag = (run["name"] + (f", {steps} steps" if n_steps > 1 else "")
                       + (f", J={latents}" if latents else ""))
                floor = rows[0].get(f"{key}_real_floor")
                for i, x in enumerate(("loops", "gflops_per_sample")):
                    axes[i, j].plot([r[x] for r in rows], [r[key] for r in rows], "o-", label=tag)
                    if floor is not None and run is runs[0] and (steps, latents) == min(by_steps):
                        axes[i, j].axhline(floor, color="grey", ls=":", lw=1, label="real floor")
        for i, x in enumerate(("loop count L", "GFLOPs per sample")):
            ax = axes[i, j]
            ax.set_xlabel(x)
            ax.set_ylabel(label + (" ↓" if lower_better else " ↑"))
            ax.grid(alpha=0.3)
            if lower_better:  # distances span orders of magnitude (a looped baseline diverges)
                ax.set_yscale("log")
            if i == 1:
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
        trained = {run["trained_loops"] for run in runs if run.get("trained_loops")}
        for L in trained:
            axes[0, j].axvline(L, color="k", ls="--", lw=0.6, alpha=0.4)
    return _finish(plt, fig, axes, "any-time quality (dashed: trained L_max; dotted: real-vs-real floor)", path)


def plot_pareto(runs: list[dict], path: str | Path) -> Path:
    """Quality against GFLOPs per sample: every evaluated point of each run (small markers, (L, J) budgets
    and sampling steps alike) and the run's Pareto front (the best quality at or below each budget) as a
    line, so one- and two-axis elastic models compare at equal compute."""
    from .anytime import pareto_front

    plt = _pyplot()
    present = _metrics_present(runs)
    fig, axes = plt.subplots(1, len(present), figsize=(4.4 * len(present), 3.9), squeeze=False)
    for j, (key, label, lower_better) in enumerate(present):
        ax = axes[0, j]
        for run in runs:
            rows = [r for r in run["results"] if key in r]
            if not rows:
                continue
            front = pareto_front(rows, key, lower_better)
            line, = ax.plot([r["gflops_per_sample"] for r in front], [r[key] for r in front], "-", lw=1.8,
                            label=run["name"])
            ax.plot([r["gflops_per_sample"] for r in rows], [r[key] for r in rows], "o", ms=3.5, alpha=0.5,
                    color=line.get_color())
            floor = rows[0].get(f"{key}_real_floor")
            if floor is not None and run is runs[0]:
                ax.axhline(floor, color="grey", ls=":", lw=1, label="real floor")
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPs per sample")
        ax.set_ylabel(label + (" ↓" if lower_better else " ↑"))
        if lower_better:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    return _finish(plt, fig, axes, "quality against compute: points = evaluated budgets, lines = Pareto fronts",
                   path)


def plot_plan(points: list[dict], result: dict, path: str | Path) -> Path:
    """The planner's view: every measured point (quality against cost per sample), the Pareto front, the budget
    and the chosen setting."""
    plt = _pyplot()
    cost, metric = result["cost"], result["metric"]
    label = next((name for key, name, _ in METRICS if key == metric), metric)
    rows = [p for p in points if metric in p and cost in p]
    fig, axes = plt.subplots(1, 1, figsize=(5.6, 4.2), squeeze=False)
    ax = axes[0, 0]
    ax.plot([p[cost] for p in rows], [p[metric] for p in rows], "o", ms=3.5, alpha=0.4, color="grey",
            label="measured settings")
    front = result["front"]
    ax.plot([p[cost] for p in front], [p[metric] for p in front], "-", lw=1.8, label="Pareto front")
    ax.axvline(result["budget"], color="r", ls=":", lw=1, label="budget")
    ax.plot(result["choice"][cost], result["choice"][metric], "*", ms=14, color="C3", label="chosen")
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per sample (counted)" if cost == "gflops_per_sample" else "seconds per sample (measured)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    unit = "GFLOPs" if cost == "gflops_per_sample" else "seconds"
    return _finish(plt, fig, axes, f"the best measured {metric} within {result['budget']:g} {unit} per sample", path)


def _finish(plt, fig, axes, title: str, path: str | Path) -> Path:
    """Legend in the first panel, the title, and the figure saved to `path` (then closed)."""
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
