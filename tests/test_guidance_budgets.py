"""Guidance along both elastic axes (CFG, ELIT's CCFG, autoguidance), per-step latent schedules, and the
(loops × latents) any-time sweep with its Pareto front."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import randomize_
from elt.anytime import gflops_per_sample, pareto_front
from elt.budget import Budget, BudgetSchedule
from elt.cli import main
from elt.errors import ConfigError
from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.models.latent import LatentConfig
from elt.sampling.common import guided_call, guided_fn, network_fn
from elt.sampling.request_checks import check_guidance_kind
from test_cli import tiny_classifier, trained  # noqa: F401  (a tiny plain run, shared with the CLI tests)


def _latent_model(seed: int = 0) -> FlowTransformer:
    torch.manual_seed(seed)
    cfg = FlowModelConfig(image_size=8, channels=1, patch=2, dim=24, heads=2, blocks=2, mlp_ratio=2.0, num_classes=3,
                          latent=LatentConfig(window=2, latents_per_group=3))
    return randomize_(FlowTransformer(cfg), seed).eval()


def _inputs(batch: int = 3):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(batch, 1, 8, 8, generator=g, dtype=torch.float32), torch.rand(batch, generator=g,
            dtype=torch.float32), torch.tensor([0, 1, 2]))


# ---- the guided call -------------------------------------------------------------------------------------------

def test_ccfg_at_equal_budgets_is_plain_cfg():
    """The two-call path (guiding budget spelled differently: J_max given vs None) equals the one batched call."""
    model = _latent_model()
    x, t, y = _inputs()
    call = network_fn(model)
    cfg = guided_call(call, (x, t), y, Budget(2), None, 2.5, null_label=model.null_label)
    ccfg = guided_call(call, (x, t), y, Budget(2), Budget(2, 3), 2.5, null_label=model.null_label)
    torch.testing.assert_close(ccfg, cfg, rtol=0, atol=1e-5)
    cheaper = guided_call(call, (x, t), y, Budget(2), Budget(2, 1), 2.5, null_label=model.null_label)
    assert not torch.allclose(cheaper, cfg)


def test_ccfg_and_autoguidance_are_their_formulas():
    """CCFG: u = model(null, Jw); autoguidance: u = model(same label, Jw); both u + w·(c − u)."""
    model = _latent_model()
    x, t, y = _inputs()
    c = model(x, t, y, loops=2)
    null = torch.full_like(y, model.null_label)
    for autoguide, label in ((False, null), (True, y)):
        u = model(x, t, label, loops=1, latents=1)
        got = guided_call(network_fn(model), (x, t), y, Budget(2), Budget(1, 1), 3.0, null_label=model.null_label,
                          autoguide=autoguide)
        torch.testing.assert_close(got, u + 3.0 * (c - u), rtol=0, atol=1e-5)


def test_the_schedule_carries_the_guiding_label_to_the_sampler():
    """guided_fn reads each step's guide: autoguidance calls the guiding branch with the samples' labels."""
    seen = []

    class Spy(torch.nn.Module):
        null_label = 9

        def forward(self, x, y, loops, latents=None):
            seen.append((loops, latents, y.tolist()))
            return x * loops

    fn = guided_fn(Spy(), 2.0)
    y = torch.tensor([0, 1])
    for guide, want in (("cfg", [9, 9]), ("autoguidance", [0, 1])):
        seen.clear()
        (step,) = BudgetSchedule.of(Budget(3, 2), 1, Budget(1, 1), guide)
        fn(torch.ones(2, 1), y, step)
        assert seen == [(3, 2, [0, 1]), (1, 1, want)]


def test_guidance_kind_checks():
    assert check_guidance_kind(None, 3.0, 4, None) == ("cfg", "cfg")
    assert check_guidance_kind("cfg", 3.0, 4, 1) == ("cfg", "ccfg")
    assert check_guidance_kind("ccfg", 3.0, Budget(4, 4), Budget(4, 1)) == ("cfg", "ccfg")
    assert check_guidance_kind("autoguidance", 3.0, 4, 2) == ("autoguidance", "autoguidance")
    assert check_guidance_kind(None, 1.0, 4, None) == ("cfg", "none")
    for kind, cond, uncond, words in (("ccfg", 4, None, "--uncond-loops LW"), ("autoguidance", 4, 4, "smaller"),
                                      ("bogus", 4, None, "cfg, ccfg, autoguidance")):
        with pytest.raises(ConfigError, match=words):
            check_guidance_kind(kind, 3.0, cond, uncond)
    with pytest.raises(ConfigError, match="guidance is off"):
        check_guidance_kind("autoguidance", 1.0, 4, 1)


# ---- per-step latents ------------------------------------------------------------------------------------------

def test_pareto_front_keeps_only_what_a_budget_can_buy():
    rows = [{"gflops_per_sample": g, "fd": f, "acc": a} for g, f, a in
            ((1, 9.0, 0.5), (2, 5.0, 0.9), (2, 6.0, 0.95), (3, 7.0, 0.8), (4, 4.0, 0.99), (5, 4.0, 0.7))]
    assert [(r["gflops_per_sample"], r["fd"]) for r in pareto_front(rows, "fd", True)] == [(1, 9.0), (2, 5.0),
                                                                                         (4, 4.0)]
    assert [(r["gflops_per_sample"], r["acc"]) for r in pareto_front(rows, "acc", False)] == [(1, 0.5), (2, 0.95),
                                                                                            (4, 0.99)]


def test_sample_per_step_latents_and_guidance_kinds(tiny_latent_run, tmp_path, monkeypatch, capsys):
    """`--latents 3,1` runs step 1 at J=3 and step 2 at J=1 and costs their sum; --guidance autoguidance keeps
    the label in the guiding branch; the record names the variant."""
    from elt.models import from_pretrained

    _, run = tiny_latent_run
    model, _ = from_pretrained(run)
    calls = []
    forward = FlowTransformer.forward

    def spy(self, x, t, y, loops, exits=None, latents=None):
        if not torch.is_grad_enabled() and len(x) > 1:  # sampling calls, not the FLOP counter's batch of 1
            calls.append((loops, latents, sorted(set(y.tolist()))))
        return forward(self, x, t, y, loops, exits, latents)

    monkeypatch.setattr(FlowTransformer, "forward", spy)
    base = ["sample", str(run), "--per-class", "1", "--steps", "2", "--loops", "2", "--precision", "fp32"]
    assert main([*base, "--out", str(tmp_path / "sched.npz"), "--latents", "3,1"]) == 0
    assert calls == [(2, 3, [0, 1, 2]), (2, 1, [0, 1, 2])]
    sched = json.loads((tmp_path / "sched.json").read_text())
    want = (gflops_per_sample(model, Budget(2, 3), 1, 1.0) + gflops_per_sample(model, Budget(2, 1), 1, 1.0))
    assert sched["latents"] == [3, 1] and sched["gflops_per_sample"] == pytest.approx(want)

    calls.clear()
    assert main([*base, "--out", str(tmp_path / "ag.npz"), "--cfg", "2", "--uncond-latents", "1",
                 "--uncond-loops", "1", "--guidance", "autoguidance"]) == 0
    assert calls == [(2, None, [0, 1, 2]), (1, 1, [0, 1, 2])] * 2  # the guiding branch keeps the labels
    calls.clear()
    assert main([*base, "--out", str(tmp_path / "cc.npz"), "--cfg", "2", "--uncond-latents", "1",
                 "--uncond-loops", "1", "--guidance", "ccfg"]) == 0
    assert calls == [(2, None, [0, 1, 2]), (1, 1, [3])] * 2  # ... where CCFG gives it the null label
    ag, cc = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ag", "cc"))
    assert ag["guidance"] == "autoguidance" and cc["guidance"] == "ccfg"
    assert ag["gflops_per_sample"] == pytest.approx(cc["gflops_per_sample"])
    assert not np.array_equal(np.load(tmp_path / "ag.npz")["arr_0"], np.load(tmp_path / "cc.npz")["arr_0"])


def test_anytime_sweeps_the_loops_by_latents_grid(tiny_latent_run, tmp_path, monkeypatch, capsys):
    """`elt anytime --latents-list`: one scored row per (L, J), FLOPs rising with both, a Pareto plot."""
    cfg_path, run = tiny_latent_run
    tiny_classifier(cfg_path, tmp_path, monkeypatch)
    out = tmp_path / "any"
    assert main(["anytime", str(run), "--out", str(out), "--classifier", str(tmp_path / "cls"), "--per-class", "2",
                 "--max-loops", "2", "--steps", "1", "--latents-list", "1", "3", "--precision", "fp32"]) == 0
    (r,) = json.loads((out / "anytime.json").read_text())["runs"]
    assert [(row["loops"], row["latents"]) for row in r["results"]] == [(1, 1), (2, 1), (1, 3), (2, 3)]
    g = {(row["loops"], row["latents"]): row["gflops_per_sample"] for row in r["results"]}
    assert g[(1, 1)] < g[(2, 1)] < g[(2, 3)] and g[(1, 1)] < g[(1, 3)] < g[(2, 3)]
    assert all("class_consistency" in row for row in r["results"])
    assert (out / "anytime_pareto.png").is_file() and (out / "anytime_quality.png").is_file()


def test_latent_flags_on_a_run_without_the_interface_are_refused(trained, tmp_path, capsys):
    _, run = trained
    assert main(["anytime", str(run), "--out", str(tmp_path / "a"), "--eval", "--latents-list", "1"]) == 2
    assert "no latent interface" in capsys.readouterr().err


def test_pareto_claim_script_reads_fronts_and_budget_ranges(tmp_path):
    """benchmarks/pareto_claim.py: each run's front value at every budget, and the class-consistency range."""
    import subprocess
    import sys
    from pathlib import Path

    def run(name, pts):
        return {"name": name, "results": [{"loops": L, "latents": J, "steps": 1, "gflops_per_sample": g,
                                           "class_consistency": c, "fd_classifier": f} for L, J, g, c, f in pts]}
    two = run("two", [(1, 1, 1.0, 0.96, 9.0), (2, 2, 4.0, 0.99, 3.0), (4, 4, 8.0, 0.99, 4.0)])
    one = run("one", [(1, None, 2.0, 0.9, 8.0), (4, None, 8.0, 0.97, 3.5)])
    paths = []
    for r in (two, one):
        paths.append(tmp_path / f"{r['name']}.json")
        paths[-1].write_text(json.dumps({"runs": [r]}))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "pareto_claim.py"
    out = subprocess.run([sys.executable, str(script), *map(str, paths), "--json", str(tmp_path / "c.json")],
                         capture_output=True, text=True, check=True).stdout
    assert "| 2.00 | 9.0 | 8.0 (L=1) |" in out and "| 8.00 | 3.0 | 3.5 (L=4) |" in out
    claim = json.loads((tmp_path / "c.json").read_text())
    assert claim["ranges"]["two"]["ratio"] == 8.0 and claim["ranges"]["one"]["ratio"] == 1.0
