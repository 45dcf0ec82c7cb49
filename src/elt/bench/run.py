"""`elt bench`: measure ELT, its iso-compute baseline and a diffusers DiT peer in one process, interleaved,
then print a table and (optionally) write every number with the protocol as JSON."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atomic import write_text_atomic
from ..config import ConfigError, load_config
from ..device import resolve_device
from ..outputs import output_file
from ..precision import check_precision, resolve_precision
from .flops import analytic_forward_flops, count_flops, matmul_peak
from .memory import peak_call_bytes, process_max_rss_bytes
from .report import format_report
from .timing import interleaved, per_rep_ratios, summarize
from .workloads import (Contestant, autocast_factory, build_contestants, check_latent_budgets, forward_step,
                        own_tensors, sample_inputs, student_loop_counts, train_inputs, train_step)

DEFAULT_BATCHES = (1, 8, 64)  # forward: one image, a small and a large sampling batch
DEFAULT_REPS, DEFAULT_WARMUP = 7, 2
MIN_REP_S = 0.05  # a timed rep repeats a call until it lasts this long (short forwards are too noisy alone)
COUNT_BATCH = 2  # FLOPs are counted at this batch and divided by it (they are linear in the batch)
SMOKE = {"batches": (1, 2), "train_batch": 2, "reps": 2, "warmup": 1, "min_rep_s": 0.0, "peak_n": 512, "peak_reps": 2}


@dataclass
class BenchOptions:
    """What `elt bench` was asked for; None means the default (or the smoke setting with smoke=True)."""

    config: str
    overrides: list[str] = field(default_factory=list)
    batches: list[int] | None = None
    train_batch: int | None = None  # default: the config's train.batch_size
    reps: int | None = None
    warmup: int | None = None
    precision: str | None = None  # default: the config's train.precision
    device: str = "auto"
    compile: bool = False
    threads: int | None = None
    peer: bool = True
    json_path: str | None = None
    smoke: bool = False
    latents: list[int] | None = None  # also time the ELT model at these latent budgets (latent configs only)
    versus: str | None = None  # also time the ELT model of this config (e.g. the same model without latents)


def _check(opts: BenchOptions) -> None:
    if opts.batches is not None and (not opts.batches or any(b < 1 for b in opts.batches)):
        raise ConfigError(f"--batch values must be >= 1, got {opts.batches}: pass one or more batch sizes, "
                          f"e.g. --batch 1 8 64")
    for flag, value, low in (("--train-batch", opts.train_batch, 1), ("--reps", opts.reps, 1),
                             ("--warmup", opts.warmup, 0), ("--threads", opts.threads, 1)):
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")
    if opts.precision is not None:
        check_precision("--precision", opts.precision, ConfigError)
    if opts.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {opts.device!r}")
    _device(opts)  # before the benchmark runs
    if opts.json_path:  # before the benchmark runs, not after it
        output_file("--json", opts.json_path, ".json", example="bench.json")


def _settings(opts: BenchOptions, cfg) -> dict:
    smoke = SMOKE if opts.smoke else {}
    pick = lambda given, key, default: given if given is not None else smoke.get(key, default)  # noqa: E731
    return {"batches": [int(b) for b in pick(opts.batches, "batches", DEFAULT_BATCHES)],
            "train_batch": pick(opts.train_batch, "train_batch", cfg.train.batch_size),
            "reps": pick(opts.reps, "reps", DEFAULT_REPS), "warmup": pick(opts.warmup, "warmup", DEFAULT_WARMUP),
            "min_rep_s": smoke.get("min_rep_s", MIN_REP_S), "peak_n": smoke.get("peak_n"),
            "peak_reps": smoke.get("peak_reps", 5), "precision": opts.precision or cfg.train.precision}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return names[0] if names else platform.processor()
    except OSError:
        return platform.processor() or platform.machine()


def _protocol(opts: BenchOptions, cfg, s: dict, device: torch.device) -> dict:
    try:
        from importlib.metadata import version
        diffusers_version = version("diffusers")
    except Exception:
        diffusers_version = None
    return {"config": str(opts.config), "overrides": list(opts.overrides), "date_utc":
            datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(), "diffusers": diffusers_version,
            "device": device.type, "device_name": _device_name(device), "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "precision": s["precision"],
            "autocast": s["precision"] == "bf16", "compile": opts.compile, "forward_batches": s["batches"],
            "train_batch": s["train_batch"], "reps": s["reps"], "warmup_reps": s["warmup"],
            "min_rep_s": s["min_rep_s"], "order": "interleaved per rep: " + ", ".join(s.get("keys", ())),
            "latents": s.get("latents"), "versus": opts.versus,
            "statistic": "median over reps; spread min/max and q1/q3; ratios per rep, then median",
            "flops_counted_at_batch": COUNT_BATCH, "smoke": opts.smoke, "model": dataclasses.asdict(cfg.model),
            "train_mode": cfg.train.mode, "train_loops": cfg.train.loops, "objective": cfg.objective.kind,
            "cuda_tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if device.type == "cuda" else None}


def _static_info(c: Contestant, cfg, s: dict, device, amp) -> dict:
    """Parameters, analytic and counted FLOPs per sample, peak memory of each workload (eager model)."""
    fwd_counted, by_op = count_flops(forward_step(c, sample_inputs(cfg, COUNT_BATCH, device), amp, eager=True))
    train_counted, _ = count_flops(train_step(c, cfg, train_inputs(cfg, COUNT_BATCH, device), amp, eager=True))
    fwd_analytic = analytic_forward_flops(c.fwd_arch)
    memory = {}
    for b in s["batches"]:
        inputs = sample_inputs(cfg, b, device)
        memory[f"forward_b{b}"] = peak_call_bytes(forward_step(c, inputs, amp, eager=True), device,
                                                  own_tensors(c, inputs, with_optimizer=False))
    inputs = train_inputs(cfg, s["train_batch"], device)
    c.opt.zero_grad(set_to_none=True)
    memory["train"] = peak_call_bytes(train_step(c, cfg, inputs, amp, eager=True), device,
                                      own_tensors(c, inputs, with_optimizer=True))
    return {"label": c.label, "loss": c.loss, "loops": c.loops,
            "params": sum(p.numel() for p in c.module.parameters()),
            "flops_per_sample": {"forward_analytic": fwd_analytic, "forward_counted": fwd_counted / COUNT_BATCH,
                                 "train_analytic_3x_forward": 3 * analytic_forward_flops(c.train_arch),
                                 "train_counted": train_counted / COUNT_BATCH,
                                 "forward_counted_by_op": {k: v / COUNT_BATCH for k, v in by_op.items()}},
            "arch": dataclasses.asdict(c.fwd_arch), "memory": memory, "notes": c.notes}


def _first_calls(c: Contestant, cfg, s: dict, device, amp, sync, repeat: int = 1) -> float:
    """Run every workload shape `repeat` times -> seconds; excluded from the timings. Under --compile this
    compiles (repeat=2: graphs that Dynamo rebuilds on a second call, e.g. with a dynamic batch, are built
    before timing)."""
    sync()
    t0 = time.perf_counter()
    c.module.eval()  # the modes the timed runs use (torch.compile guards on them)
    for b in s["batches"]:
        fwd = forward_step(c, sample_inputs(cfg, b, device), amp)
        for _ in range(repeat):
            fwd()
    c.module.train()
    step = train_step(c, cfg, train_inputs(cfg, s["train_batch"], device), amp)
    for l_int in student_loop_counts(c, cfg):
        for _ in range(repeat):
            step(l_int)
    sync()
    return time.perf_counter() - t0


def compile_settings(contestants: list[Contestant], cfg, s: dict) -> dict:
    """torch._dynamo settings for --compile: each ILSD student exit and each batch size is its own graph, and
    same-class models share the per-function recompile limit, hence the raised limit."""
    need = sum(len(s["batches"]) + len(student_loop_counts(c, cfg)) + 2 for c in contestants)
    return {"recompile_limit": max(8, need)}


def _graphs_compiled() -> int | None:
    """Graphs torch.compile has built so far in this process (None if PyTorch does not say)."""
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:
        return None


def _group(timings: dict, contestants: list[Contestant], batch: int, flops_key: str, info: dict, peak: float) -> dict:
    models = {}
    for c in contestants:
        t = timings[c.key]
        med = summarize(t.times)["median"]
        gflops = info[c.key]["flops_per_sample"][flops_key] * batch / med / 1e9
        models[c.key] = {"s_per_call": summarize(t.times), "samples_per_s": summarize([batch / x for x in t.times]),
                         "gflops_counted": gflops, "share_of_peak": gflops / peak, "inner_calls_per_rep": t.inner,
                         "times_s": t.times}
    keys = [c.key for c in contestants]  # every pair in contestant order: elt, [elt_jJ …, versus,] baseline, peer
    ratios = {f"{a}/{b}": summarize(per_rep_ratios(timings[a].times, timings[b].times))
              for i, a in enumerate(keys) for b in keys[i + 1:]}
    return {"batch": batch, "models": models, "time_ratios": ratios}


def _device(opts: BenchOptions) -> torch.device:
    no_cuda = ConfigError("--device cuda, but this PyTorch sees no CUDA device: use --device cpu (or auto)")
    return resolve_device(opts.device, no_cuda)


def run_bench(opts: BenchOptions, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    """Run the benchmark -> the result dict (also printed as a table, and written to opts.json_path)."""
    _check(opts)
    cfg = load_config(opts.config, opts.overrides)
    if cfg.family != "flow":
        raise ConfigError(f"elt bench measures the flow family (its peer is diffusers' DiT); {opts.config} is a "
                          f"{cfg.family!r} config: time masked sampling with `elt sample`, which reports seconds")
    check_latent_budgets(cfg, opts.latents)  # before the benchmark runs
    versus = None
    if opts.versus is not None:
        versus = load_config(opts.versus)
        if versus.family != "flow":
            raise ConfigError(f"--versus {opts.versus} is a {versus.family!r} config: elt bench measures flow models")
    s = _settings(opts, cfg)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = _device(opts)
    s["precision"] = resolve_precision(s["precision"], device)  # "auto" -> what this device runs
    amp = autocast_factory(device, s["precision"])

    log("measuring the matmul peak (fp32, bf16) ...")
    max_n = 8192 if device.type == "cuda" else 4096
    peaks = {name: matmul_peak(device, dt, n=s["peak_n"], reps=s["peak_reps"], max_n=max_n)
             for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    log("building models, counting FLOPs, probing memory ...")
    contestants, skipped = build_contestants(cfg, device, peer=opts.peer, latents=opts.latents, versus=versus,
                                             versus_name=opts.versus)
    s["keys"] = [c.key for c in contestants]  # the interleaving order
    if cfg.j_max is not None:  # the latent budgets of the config's ELT rows
        s["latents"] = [c.latents or cfg.j_max for c in contestants if c.key.startswith("elt")]
    if skipped:
        log(f"peer skipped: {skipped}")
    info = {c.key: _static_info(c, cfg, s, device, amp) for c in contestants}
    protocol = _protocol(opts, cfg, s, device)
    with contextlib.ExitStack() as stack:
        if opts.compile:
            from torch import _dynamo

            settings = compile_settings(contestants, cfg, s)
            protocol["compile_settings"] = {"dynamic": None, **settings}
            stack.enter_context(_dynamo.config.patch(**settings))
            for c in contestants:
                c.net = torch.compile(c.module)
        peak = peaks[s["precision"]]["gflops"]
        forward, train = _measure(contestants, cfg, s, device, amp, info, peak, protocol, log)

    result = {"protocol": protocol, "matmul_peak": {**peaks, "used": s["precision"]},
              "models": info, "forward": forward, "train": train,
              "peer": {"included": "peer" in info, "skipped_reason": skipped},
              "process_max_rss_bytes": process_max_rss_bytes(),
              "notes": ["time ratios a/b: > 1 means a is slower", "forward: one sampling step at the model's full "
                        "loop count, torch.no_grad, conditional batch (no CFG doubling)",
                        "train step: objective.training_inputs + forward + the project's loss (ILSD: ilsd_loss over "
                        "the student and teacher exits of one pass) + backward + clip_grad_norm_ + AdamW, as in "
                        "Trainer.train_step without data loading and EMA; baseline and peer: ground-truth "
                        "flow-matching loss",
                        "FLOPs: matmuls only, 2·m·n·k; GFLOP/s from counted FLOPs and the median time",
                        "latent interface: the forward runs at the row's J (J_max unless --latents); training steps "
                        "draw J̃ from (seed, step) as the trainer does (a --latents row trains at J̃ = J), and their "
                        "analytic FLOPs are those of step 0's draw",
                        "memory: own tensors (weights, inputs, AdamW state for training) + peak allocation during "
                        "one eager call; process_max_rss_bytes is the whole process's resident high-water mark"]}
    print(format_report(result))
    if opts.json_path:
        path = Path(opts.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(result, indent=2))
        print(f"wrote {path}")
    return result


def _measure(contestants, cfg, s, device, amp, info, peak, protocol, log) -> tuple[list[dict], dict]:
    """First calls (compilation), then the interleaved forward groups and the training group."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    log("first calls" + (" (compiling)" if protocol["compile"] else "") + " ...")
    compiled = protocol["compile"]
    for c in contestants:
        info[c.key]["first_calls_s"] = _first_calls(c, cfg, s, device, amp, sync, repeat=2 if compiled else 1)
    graphs_primed = _graphs_compiled() if compiled else None
    timing = {"reps": s["reps"], "warmup": s["warmup"], "sync": sync, "min_rep_s": s["min_rep_s"]}
    forward = []
    for b in s["batches"]:
        log(f"timing forward at batch {b} ...")
        for c in contestants:
            c.module.eval()
        inputs = sample_inputs(cfg, b, device)
        tasks = {c.key: forward_step(c, inputs, amp) for c in contestants}
        times = interleaved(tasks, **timing)
        forward.append(_group(times, contestants, b, "forward_counted", info, peak))
    log(f"timing the training step at batch {s['train_batch']} ...")
    for c in contestants:
        c.module.train()
    inputs = train_inputs(cfg, s["train_batch"], device)
    tasks = {c.key: train_step(c, cfg, inputs, amp) for c in contestants}
    train = _group(interleaved(tasks, **timing), contestants, s["train_batch"], "train_counted", info, peak)
    if compiled:  # > 0: some compilation fell inside the warm-up reps (the timed reps come after them)
        after = _graphs_compiled()
        protocol["graphs_compiled_after_first_calls"] = None if None in (after, graphs_primed) \
            else after - graphs_primed
    return forward, train
