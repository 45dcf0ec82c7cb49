"""`elt bench`: the CLI in smoke mode, FLOP formulas against FlopCounterMode, the interleaved timer and its
statistics, the peak-memory tracker, and a clean skip of the diffusers peer when diffusers is missing."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from elt.bench.flops import analytic_forward_flops, count_flops, flow_arch, matmul_peak
from elt.bench.memory import LiveTensorBytes
from elt.bench.peer import PeerUnavailable, load_dit_class
from elt.bench.run import BenchOptions, run_bench
from elt.bench.timing import interleaved, per_rep_ratios, summarize
from elt.cli import main
from elt.config import ConfigError
from elt.models import build_model

HAS_DIFFUSERS = importlib.util.find_spec("diffusers") is not None


@pytest.fixture
def tiny_yaml(tmp_path, tiny_cfg_dict) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_cfg_dict()))
    return path


def _bench(cfg_path: Path, out: Path, *extra: str) -> dict:
    assert main(["bench", str(cfg_path), "--smoke", "--threads", "1", "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


# ---- the command ---------------------------------------------------------------------------------------------

def test_smoke_bench_writes_json_and_table(tiny_yaml, tmp_path, capsys):
    r = _bench(tiny_yaml, tmp_path / "bench.json")
    stdout = capsys.readouterr().out
    assert "forward (one sampling step" in stdout and "training step" in stdout and "time ratios" in stdout
    p = r["protocol"]
    for key in ("torch", "device", "threads", "precision", "forward_batches", "train_batch", "reps", "config",
                "warmup_reps", "compile"):
        assert key in p, key
    assert p["config"] == str(tiny_yaml) and p["forward_batches"] == [1, 2] and p["train_batch"] == 2
    assert p["reps"] == 2 and p["precision"] == "fp32" and p["threads"] == 1
    assert r["matmul_peak"]["fp32"]["gflops"] > 0 and r["matmul_peak"]["bf16"]["gflops"] > 0
    expected = {"elt", "baseline"} | ({"peer"} if HAS_DIFFUSERS else set())
    assert set(r["models"]) == expected and r["peer"]["included"] == HAS_DIFFUSERS
    elt, base = r["models"]["elt"], r["models"]["baseline"]
    assert elt["params"] < base["params"]  # N blocks vs N·L blocks
    assert elt["loss"] == "ilsd" and elt["loops"] == 3 and base["loops"] == 1
    for m in r["models"].values():
        f = m["flops_per_sample"]
        assert f["forward_counted"] == pytest.approx(f["forward_analytic"], rel=0.03)
        assert f["train_counted"] == pytest.approx(f["train_analytic_3x_forward"], rel=0.1)
        assert m["memory"]["train"]["bytes"] > m["memory"]["train"]["own_bytes"] > 0
    assert [g["batch"] for g in r["forward"]] == [1, 2] and r["train"]["batch"] == 2
    for g in [*r["forward"], r["train"]]:
        assert set(g["models"]) == expected
        for m in g["models"].values():
            assert len(m["times_s"]) == 2 and m["s_per_call"]["median"] > 0 and m["gflops_counted"] > 0
        assert "elt/baseline" in g["time_ratios"] and ("baseline/peer" in g["time_ratios"]) == HAS_DIFFUSERS
        ratio = g["time_ratios"]["elt/baseline"]["median"]
        times = g["models"]["elt"]["times_s"], g["models"]["baseline"]["times_s"]
        assert ratio == pytest.approx(sum(a / b for a, b in zip(*times)) / 2)  # per-rep ratios, then median


def test_peer_skipped_cleanly_without_diffusers(tiny_yaml, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` raise ImportError
    with pytest.raises(PeerUnavailable, match="pip install"):
        load_dit_class()
    r = _bench(tiny_yaml, tmp_path / "b.json")
    captured = capsys.readouterr()
    assert set(r["models"]) == {"elt", "baseline"}
    assert r["peer"] == {"included": False, "skipped_reason": r["peer"]["skipped_reason"]}
    assert "diffusers is not installed" in r["peer"]["skipped_reason"]
    assert "peer skipped" in captured.out and "pip install" in captured.out
    assert set(r["train"]["time_ratios"]) == {"elt/baseline"}


def test_baseline_config_benches_its_looped_counterpart(tiny_cfg_dict, tmp_path):
    d = tiny_cfg_dict()
    d["train"]["mode"] = "baseline"
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(d))
    r = _bench(path, tmp_path / "b.json", "--no-peer", "--batch", "3")
    assert r["models"]["elt"]["loops"] == 3 and r["models"]["elt"]["loss"] == "ilsd"
    assert any("baseline" in n for n in r["models"]["elt"]["notes"])
    assert [g["batch"] for g in r["forward"]] == [3]


def test_a_latent_config_benches_its_budgets_against_another_config(tiny_cfg_dict, tiny_yaml, tmp_path):
    """--latents J times the model at J beside J_max, --versus CONFIG another config's model; all interleaved."""
    d = tiny_cfg_dict()
    d["model"] |= {"patch": 2, "latent": {"window": 2, "latents_per_group": 4}}
    path = tmp_path / "latent.yaml"
    path.write_text(yaml.safe_dump(d))
    r = _bench(path, tmp_path / "l.json", "--no-peer", "--latents", "4", "1", "--versus", str(tiny_yaml))
    keys = ["elt", "elt_j1", "versus", "baseline"]
    assert list(r["models"]) == keys and r["protocol"]["latents"] == [4, 1]
    assert r["protocol"]["versus"] == str(tiny_yaml) and r["protocol"]["order"].endswith(", ".join(keys))
    m = r["models"]
    assert m["elt"]["label"].endswith("J=4") and m["elt_j1"]["label"].endswith("J=1")
    assert m["versus"]["params"] < m["elt"]["params"]  # no head, tail, Read or Write
    for key in keys:
        f = m[key]["flops_per_sample"]
        assert f["forward_counted"] == f["forward_analytic"], key  # the latent path's count is exact
        assert f["train_counted"] == pytest.approx(f["train_analytic_3x_forward"], rel=0.1), key
    assert m["elt_j1"]["flops_per_sample"]["forward_analytic"] < m["elt"]["flops_per_sample"]["forward_analytic"]
    for g in [*r["forward"], r["train"]]:
        assert list(g["models"]) == keys
        assert {"elt/versus", "elt_j1/versus", "elt/elt_j1", "elt/baseline"} <= set(g["time_ratios"])
    with pytest.raises(ConfigError, match=r"--latents values must be in 1\.\.4 \(the model's latents per group\)"):
        run_bench(BenchOptions(str(path), latents=[5], smoke=True, peer=False))
    with pytest.raises(ConfigError, match="the config has no latent interface: add a model.latent section or drop "
                                          "--latents"):
        run_bench(BenchOptions(str(tiny_yaml), latents=[1], smoke=True, peer=False))


@pytest.mark.parametrize("flags, match", [(["--batch", "0"], "--batch"), (["--batch", "2", "-1"], "--batch"),
                                          (["--reps", "0"], "--reps"), (["--train-batch", "0"], "--train-batch")])
def test_bad_flags_are_clear_errors(tiny_yaml, flags, match, capsys):
    assert main(["bench", str(tiny_yaml), "--smoke", *flags]) == 2
    assert match in capsys.readouterr().err
    with pytest.raises(ConfigError, match=match):
        run_bench(BenchOptions(str(tiny_yaml), batches=[0] if match == "--batch" else None,
                               reps=0 if match == "--reps" else None,
                               train_batch=0 if match == "--train-batch" else None, smoke=True))


# ---- FLOPs ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["ilsd", "baseline"])
def test_analytic_flops_match_flop_counter(make_config, mode):
    # 16×16 images with patch 2: 64 tokens, so the attention matmuls are a third of a block's FLOPs
    cfg = make_config("model.image_size=16", "model.patch=2", "data.image_size=16", f"train.mode={mode}")
    model = build_model(cfg)
    B, L, m = 3, cfg.train_loops, cfg.model
    x, t, y = torch.randn(B, 1, 16, 16), torch.rand(B), torch.randint(0, m.num_classes, (B,))
    for exits in (None, (1, L)):
        with torch.no_grad():
            counted, by_op = count_flops(lambda e=exits: model(x, t, y, loops=L, exits=e))
        arch = flow_arch(m, cfg.model_blocks, L, exits=1 if exits is None else 2)
        assert counted / B == pytest.approx(analytic_forward_flops(arch), rel=0.02)
        assert by_op.get("aten.bmm", 0) > 0  # the attention matmuls were counted


def test_analytic_flops_scale_with_loops(make_config):
    m = make_config().model
    one, four = (analytic_forward_flops(flow_arch(m, 2, L)) for L in (1, 4))
    per_loop = analytic_forward_flops(flow_arch(m, 2, 2)) - one
    assert per_loop > 0 and four == one + 3 * per_loop


# ---- timing and statistics -----------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_task(clock: FakeClock, calls: list, name: str, seconds: float):
    """A task that records its name and advances the fake clock by `seconds`."""
    def run():
        calls.append(name)
        clock.now += seconds
    return run


def test_interleaved_calls_tasks_in_turn_and_times_each():
    clock, calls = FakeClock(), []

    task = lambda name, seconds: fake_task(clock, calls, name, seconds)  # noqa: E731

    res = interleaved({"a": task("a", 1.0), "b": task("b", 2.0), "c": task("c", 0.5)}, reps=3, warmup=1, clock=clock)
    assert calls == ["a", "b", "c"] * 4  # warm-up round, then rep 1, rep 2, rep 3
    assert res["a"].times == [1.0] * 3 and res["b"].times == [2.0] * 3 and res["c"].times == [0.5] * 3


def test_interleaved_repeats_short_calls_to_fill_a_rep():
    clock, calls = FakeClock(), []

    task = lambda name, seconds: fake_task(clock, calls, name, seconds)  # noqa: E731

    res = interleaved({"a": task("a", 1.0), "b": task("b", 2.0)}, reps=2, warmup=1, clock=clock, min_rep_s=5.0)
    assert (res["a"].inner, res["b"].inner) == (5, 3)
    assert calls == ["a", "b"] + (["a"] * 5 + ["b"] * 3) * 2
    assert res["a"].times == [1.0, 1.0] and res["b"].times == [2.0, 2.0]  # seconds per call


def test_interleaved_rejects_bad_counts():
    with pytest.raises(ValueError, match="reps"):
        interleaved({"a": lambda: None}, reps=0)
    with pytest.raises(ValueError, match="warmup"):
        interleaved({"a": lambda: None}, reps=1, warmup=-1)


def test_summarize_known_numbers():
    s = summarize([5, 1, 3, 2, 4])
    assert (s["median"], s["min"], s["max"], s["q1"], s["q3"], s["n"]) == (3, 1, 5, 2, 4, 5)
    assert summarize([4, 1, 2, 3])["median"] == 2.5
    assert summarize([7.0]) == {"median": 7.0, "min": 7.0, "max": 7.0, "q1": 7.0, "q3": 7.0, "n": 1}
    with pytest.raises(ValueError):
        summarize([])


def test_per_rep_ratios():
    assert per_rep_ratios([2.0, 3.0, 8.0], [1.0, 3.0, 2.0]) == [2.0, 1.0, 4.0]
    with pytest.raises(ValueError, match="lengths"):
        per_rep_ratios([1.0], [1.0, 2.0])


# ---- memory --------------------------------------------------------------------------------------------------

def test_live_tensor_bytes_tracks_allocations_and_frees():
    with LiveTensorBytes() as live:
        a = torch.zeros(1000)  # 4,000 bytes
        b = torch.zeros(500)  # 2,000 bytes -> 6,000 live
        view = a[:10]  # a view: no new storage
        del a, view
        c = torch.zeros(250)  # 1,000 bytes -> 3,000 live
        assert live.current == 3000
        del b, c
    assert live.peak == 6000 and live.current == 0


def test_matmul_peak_stops_growing_the_size_once_one_matmul_is_slow():
    """A dtype the device only emulates (bf16 on an AVX2 CPU: ~1 GFLOP/s) must not be timed at n = 4096."""
    cpu = torch.device("cpu")
    slow = matmul_peak(cpu, torch.float32, reps=1, max_n=2048, slow_s=0.0)  # every matmul counts as slow
    assert list(slow["by_n"]) == ["1024"]
    fast = matmul_peak(cpu, torch.float32, reps=1, max_n=2048, slow_s=1e9)
    assert list(fast["by_n"]) == ["1024", "2048"]
