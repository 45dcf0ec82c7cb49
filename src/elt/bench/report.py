"""Plain-text tables for an `elt bench` result dict."""
from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    fmt = lambda r: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)  # noqa: E731
                              for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def _spread(s: dict, scale: float = 1.0, digits: int = 2) -> str:
    return f"{s['median'] * scale:.{digits}f} [{s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f}]"


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _timing_rows(group: dict, models: dict, mem_key: str) -> list[list[str]]:
    rows = []
    for key, m in group["models"].items():
        rows.append([models[key]["label"], _spread(m["s_per_call"], 1e3), f"{m['samples_per_s']['median']:.1f}",
                     f"{m['gflops_counted']:.1f}", f"{100 * m['share_of_peak']:.1f}%",
                     _mib(models[key]["memory"][mem_key]["bytes"])])
    return rows


def format_report(r: dict) -> str:
    p, models, peaks = r["protocol"], r["models"], r["matmul_peak"]
    used = peaks["used"]
    flags = (f" --latents {' '.join(map(str, p['latents']))}" if p.get("latents") else "") \
        + (f" --versus {p['versus']}" if p.get("versus") else "")
    out = [f"elt bench {p['config']} {' '.join(p['overrides'])}".rstrip() + flags,
           f"device {p['device']} ({p['device_name']}), {p['threads']} threads, precision {p['precision']}"
           f"{' (autocast)' if p['autocast'] else ''}, torch {p['torch']}, compile {p['compile']}, "
           f"median of {p['reps']} interleaved reps after {p['warmup_reps']} warm-up",
           "matmul peak (median, n x n): " + ", ".join(f"{k} {v['gflops']:.1f} GFLOP/s (n={v['n']})"
                                                      for k, v in peaks.items() if k != "used")
           + f"; %peak below is against {used}", ""]
    rows = []
    for m in models.values():
        f = m["flops_per_sample"]
        first = f"{m['first_calls_s']:.2f}" if "first_calls_s" in m else "-"
        rows.append([m["label"], f"{m['params'] / 1e6:.2f} M", f"{f['forward_analytic'] / 1e6:.1f}",
                     f"{f['forward_counted'] / 1e6:.1f}", f"{f['train_analytic_3x_forward'] / 1e6:.1f}",
                     f"{f['train_counted'] / 1e6:.1f}", m["loss"], first])
    out += [table(["model", "params", "fwd MFLOP/sample analytic", "counted", "train MFLOP/sample 3x analytic",
                   "counted", "train loss", "compile+first calls s" if p["compile"] else "first calls s"], rows), ""]
    heads = ["model", "ms/call median [min-max]", "samples/s", "GFLOP/s", "%peak", "peak tensor mem"]
    ratio_heads = None
    for g in r["forward"]:
        out += [f"forward (one sampling step, no_grad, no CFG) at batch {g['batch']}",
                table(heads, _timing_rows(g, models, f"forward_b{g['batch']}")), ""]
        ratio_heads = ratio_heads or list(g["time_ratios"])
    t = r["train"]
    out += [f"training step (forward + loss + backward + grad clip + AdamW) at batch {t['batch']}",
            table(heads, _timing_rows(t, models, "train")), ""]
    if ratio_heads:
        rows = [[f"forward b{g['batch']}", *(_spread(g["time_ratios"][k], digits=3) for k in ratio_heads)]
                for g in r["forward"]]
        rows.append([f"train b{t['batch']}", *(_spread(t["time_ratios"][k], digits=3) for k in ratio_heads)])
        out += ["time ratios a/b, median [min-max] of per-rep ratios (> 1: a is slower)",
                table(["workload", *ratio_heads], rows), ""]
    if not r["peer"]["included"]:
        out.append(f"peer skipped: {r['peer']['skipped_reason']}")
    any_model = next(iter(models.values()))
    out.append(f"peak tensor mem = own tensors + peak allocation of one eager call "
               f"({any_model['memory']['train']['method']}); process resident high-water mark "
               f"(whole process, all models): {_mib(r['process_max_rss_bytes'])}")
    out += [f"note: {n}" for m in models.values() for n in m["notes"]]
    return "\n".join(out)
