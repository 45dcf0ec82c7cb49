"""Plots of the adaptive-exit study (adaptive.json of `elt anytime --halt-list`): the operating curves against
the three baselines, the exit-loop heat maps, and the rule's value against the true gap."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import _pyplot

MARKERS = {"adaptive": ("o", "adaptive"), "static": ("s", "static per-step schedule"),
           "shuffled": ("x", "shuffled exits")}


def plot_curves(study: dict, path: str | Path) -> Path:
    """FD-classifier and class-consistency against GFLOPs per sample: the fixed-L curve as a line, each rule's
    adaptive, static and shuffled points as markers (one colour per rule)."""
    plt = _pyplot()
    points = study["points"]
    fixed = sorted((p for p in points.values() if p["kind"] == "fixed"), key=lambda p: p["gflops"])
    rules = list(dict.fromkeys(p["rule"] for p in points.values() if p["kind"] != "fixed"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), squeeze=False)
    for ax, key, label in ((axes[0, 0], "fd_classifier", "FD (classifier features) ↓"),
                           (axes[0, 1], "class_consistency", "class-consistency ↑")):
        ax.plot([p["gflops"] for p in fixed], [p[key] for p in fixed], "k-", lw=1.5, label="fixed L")
        for p in fixed:
            ax.annotate(f"L={p['loops']}", (p["gflops"], p[key]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        for i, rule in enumerate(rules):
            for kind, (marker, name) in MARKERS.items():
                p = points.get(f"{kind} {rule}")
                if p is not None:
                    ax.plot(p["gflops"], p[key], marker, color=f"C{i}", ms=7, mfc="none" if kind != "adaptive"
                            else f"C{i}", label=f"{name}, {rule}")
        ax.set_xlabel("GFLOPs per sample (counted)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"adaptive exit against fixed L, a static per-step schedule and shuffled exits ({study['n']} paired "
                 f"samples, {study['steps']} steps, CFG {study['cfg']:g})", fontsize=9)
    return _save(plt, fig, path)


def plot_heat(study: dict, path: str | Path) -> Path:
    """Per rule: the fraction of samples exiting at each loop (columns) at each sampling step (rows), with the
    static schedule calibrated from it marked."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    adaptive = [p for p in study["points"].values() if p["kind"] == "adaptive"]
    fig, axes = plt.subplots(1, len(adaptive), figsize=(2.6 * len(adaptive) + 1, 0.22 * study["steps"] + 2),
                             squeeze=False)
    for ax, p in zip(axes[0], adaptive):
        heat = np.asarray(p["heat"], dtype=float)  # (steps, cap)
        heat /= heat.sum(1, keepdims=True)
        im = ax.imshow(heat, aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="upper",
                       extent=(0.5, heat.shape[1] + 0.5, heat.shape[0] - 0.5, -0.5))
        schedule = study["points"].get(f"static {p['rule']}", {}).get("schedule")
        if schedule:
            ax.plot(schedule, range(len(schedule)), "w.", ms=4, label="static schedule")
        ax.plot(p["per_step"], range(len(p["per_step"])), "r-", lw=1, label="mean exit")
        ax.set_title(f"{p['rule']}: {p['mean_loops']:.2f} loops", fontsize=8)
        ax.set_xlabel("exit loop")
        ax.set_xticks(range(1, heat.shape[1] + 1))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("sampling step")
    axes[0, 0].legend(fontsize=6, loc="lower left")
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.05, label="fraction of samples")
    fig.suptitle("where the rule exits (step × loop)", fontsize=9)
    return _save(plt, fig, path, tight=False)


def plot_gap(study: dict, path: str | Path) -> Path:
    """Per rule kind: its value at loop l against the true gap to the cap (log-log, a sample of the pairs)."""
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter

    kinds = list(study["correlation"])
    fig, axes = plt.subplots(1, max(len(kinds), 1), figsize=(4.2 * max(len(kinds), 1), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        c = study["correlation"][kind]
        v, g = np.asarray(c["scatter"]["value"]), np.asarray(c["scatter"]["gap"])
        ok = (v > 0) & (g > 0)
        ax.loglog(v[ok], g[ok], ".", ms=2, alpha=0.3)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        for tau in c["decisions"]:
            ax.axvline(float(tau), color="r", ls=":", lw=0.8)
        ax.set_xlabel(f"{kind} rule value at loop l (change from l - 1)")
        ax.set_ylabel(f"true gap to L = {study['cap']}")
        within = ", ".join(f"l={l} {r:+.2f}" for l, r in c["within_step"].items())
        ax.set_title(f"Spearman {c['spearman']:+.3f} ({c['pairs']} pairs)\nwithin a step: {within}", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("does the rule know how far a sample is from the full-depth prediction? (dotted: the τ studied)",
                 fontsize=9)
    return _save(plt, fig, path)


def _save(plt, fig, path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
