"""The adaptive-exit study (`elt anytime RUN --eval --halt-list RULE:τ ...`): the gap probe reads the rule and the
true gap to the cap exactly; the static schedule is the held-out samples' mean exit per step; shuffled exits keep
each step's exit distribution but not the sample's; the study's points pair with the sweep's fixed points and
join anytime.json as planner candidates; bad input gets one clear line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from conftest import assert_one_clear_line, randomize_
from elt.adaptive_study import fixed_curve_at, shuffled_exits, spearman, static_schedule
from elt.budget import Budget
from elt.cli import main
from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.sampling.adaptive import GapProbe, adaptive_predict
from elt.sampling.common import guided_call, network_fn

CLOSE = {"rtol": 1e-4, "atol": 1e-6}  # float rounding: CPU matmuls of other batch sizes sum in another order


def _rms(a):
    return a.flatten(1).pow(2).mean(1).sqrt()


@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_the_probe_reads_the_rule_and_the_true_gap_to_the_cap(cfg):
    torch.manual_seed(0)
    model = randomize_(FlowTransformer(FlowModelConfig(image_size=8, channels=1, patch=4, dim=32, heads=2, blocks=2,
                                                       mlp_ratio=2.0, num_classes=3)), std=0.15).eval()
    g = torch.Generator().manual_seed(1)
    x, t, y = torch.randn(5, 1, 8, 8, generator=g), torch.rand(5, generator=g), torch.arange(5) % 3
    probe = GapProbe("sampler", 4)
    pred, used = adaptive_predict(model, (x, t), y, probe, cfg, coef=0.5)
    fixed = [guided_call(network_fn(model), (x, t), y, Budget(L), None, cfg, null_label=model.null_label).float()
             for L in range(1, 5)]
    assert used.tolist() == [4] * 5  # the probe never exits early: the fixed-cap trajectory
    torch.testing.assert_close(pred, fixed[-1], **CLOSE)
    (step, values, gaps), = probe.records
    assert step is None  # a direct call; the samplers pass their step
    assert values.shape == gaps.shape == (5, 2)  # loops 2 and 3 (where a rule could stop)
    for i, L in enumerate((2, 3)):
        torch.testing.assert_close(values[:, i], 0.5 * _rms(fixed[L - 1] - fixed[L - 2]), **CLOSE)
        torch.testing.assert_close(gaps[:, i], 0.5 * _rms(fixed[3] - fixed[L - 1]), **CLOSE)


def test_static_schedule_is_the_rounded_mean_exit_per_step():
    calib = torch.tensor([[4, 4, 3, 4], [2, 3, 2, 2], [1, 2, 2, 1], [3, 3, 3, 3]])  # (steps, n)
    assert static_schedule(calib, 4) == [4, 2, 2, 3]  # means 3.75, 2.25, 1.5 (rounds to even: 2), 3


def test_shuffled_exits_keep_each_steps_distribution_but_not_the_samples():
    loops = torch.tensor([[1, 2, 3, 4, 4, 1], [2, 2, 2, 3, 1, 4], [4, 3, 2, 1, 1, 1]])
    shuffled = shuffled_exits(loops)
    for step, row in zip(loops, shuffled):
        assert sorted(row.tolist()) == sorted(step.tolist())
    assert not torch.equal(shuffled, loops)


def test_spearman_and_the_fixed_curve_interpolation():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a * 10) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)  # 1 - 6·2 / (4·15)
    curve = [(2.0, 60.0), (4.0, 30.0), (6.0, 24.0)]
    assert fixed_curve_at(curve, 4.0) == pytest.approx(30.0)
    assert fixed_curve_at(curve, 5.0) == pytest.approx(27.0)
    assert fixed_curve_at(curve, 3.0) == pytest.approx(45.0)


@pytest.fixture(scope="module")
def studied(tiny_cfg_dict, tmp_path_factory):
    """A tiny trained flow run (L_max = 3), a one-epoch classifier of its data, and one study of two rules."""
    from elt.data import load_dataset
    from elt.eval.classifier import save_classifier, train_classifier

    root = tmp_path_factory.mktemp("study")
    mp = pytest.MonkeyPatch()
    mp.setenv("ELT_CACHE", str(root / "cache"))
    cfg = tiny_cfg_dict()
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(root / "c.yaml"), "train.steps=3", "train.lr=0.01", "--out", str(root / "run"),
                 "--no-progress"]) == 0
    ds = load_dataset(cfg["data"]["name"], "train", image_size=8, channels=1)
    x, y = ds.get_batch(torch.arange(len(ds)))
    save_classifier(train_classifier(x, y, x, y, epochs=1, batch_size=16, progress=False)[0], root / "cls", {})
    out = root / "any"
    assert main(["anytime", str(root / "run"), "--out", str(out), "--eval", "--features", "classifier",
                 "--classifier", str(root / "cls"), "--per-class", "4", "--max-loops", "3", "--steps", "4", "--cfg",
                 "2", "--halt-list", "sampler:0.03", "latent:0.05", "--calib-n", "6", "--boot", "20",
                 "--precision", "fp32", "--seed", "5"]) == 0
    yield root, out
    mp.undo()


def test_the_study_pairs_with_the_sweep_and_calibrates_on_held_out_samples(studied):
    from elt.sampling.adaptive import HaltRule
    from elt.sampling.generate import generate, load_run

    root, out = studied
    study = json.loads((out / "adaptive.json").read_text())
    (entry,) = json.loads((out / "anytime.json").read_text())["runs"]
    sweep = {row["loops"]: row for row in entry["results"] if "halt" not in row and "schedule" not in row}
    for L in (1, 2, 3):  # the study's fixed curve is the sweep's own points, in the same reference
        p = study["points"][f"fixed L={L}"]
        assert p["gflops"] == sweep[L]["gflops_per_sample"]
        assert p["fd_classifier"] == pytest.approx(sweep[L]["fd_classifier"], rel=1e-6)
    run = load_run(root / "run")
    for rule in (HaltRule("sampler", 0.03, 3), HaltRule("latent", 0.05, 3)):
        tag = f"{rule.kind}:{rule.tau:g}"
        trace = []
        generate(run.sampler, torch.arange(6) % 3, 3, 4, 2.0, 6, None, "fp32", "", halt=rule, trace=trace)
        assert study["points"][f"static {tag}"]["schedule"] == static_schedule(torch.cat(trace, 1), 3)
        trace = []
        generate(run.sampler, torch.arange(3).repeat_interleave(4), 3, 4, 2.0, 5, None, "fp32", "", halt=rule, trace=trace)
        loops = torch.cat(trace, 1)
        a = study["points"][f"adaptive {tag}"]
        assert a["mean_loops"] == pytest.approx(float(loops.float().mean()))
        assert a["heat"] == [[int((loops[k] == L).sum()) for L in (1, 2, 3)] for k in range(4)]
        rows = [r for r in entry["results"] if r.get("halt") == tag]
        assert len(rows) == 1 and rows[0]["gflops_per_sample"] == a["gflops"] and rows[0]["halt_cap"] == 3
        assert [r for r in entry["results"] if r.get("schedule") == study["points"][f"static {tag}"]["schedule"]]
    assert {"sampler", "latent"} == set(study["correlation"])
    assert study["correlation"]["sampler"]["pairs"] == 6 * 4 * 1  # samples × steps × judged loops below the cap
    assert set(study["correlation"]["sampler"]["within_step"]) == {"2"}
    assert [s["rule"] for s in study["summary"]] == ["sampler:0.03", "latent:0.05"]
    for name in ("adaptive_curves.png", "adaptive_heat.png", "adaptive_gap.png", "anytime_pareto.png"):
        assert (out / name).is_file(), name


def test_the_planner_can_choose_a_halting_rule_and_sample_uses_it(studied, tmp_path):
    """A table whose best point within the budget is a halting rule: `elt sample --budget` samples with it."""
    root, out = studied
    table = json.loads((out / "anytime.json").read_text())
    rows = table["runs"][0]["results"]
    halt_row = next(r for r in rows if r.get("halt") == "sampler:0.03")
    for r in rows:  # make the halting rule the best measured point
        r["fd_classifier"] = 1.0 if r is halt_row else 100.0
    run = tmp_path / "run"
    import shutil

    shutil.copytree(root / "run", run)
    (run / "anytime").mkdir()
    (run / "anytime" / "anytime.json").write_text(json.dumps(table))
    assert main(["sample", str(run), "--budget", str(halt_row["gflops_per_sample"] * 1.01), "--per-class", "2",
                 "--out", str(tmp_path / "s.npz")]) == 0
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["halt"] == {"rule": "sampler", "tau": 0.03, "cap": 3} and record["steps"] == 4
    assert "halt=sampler:0.03" in record["budget"]["setting"]


@pytest.mark.parametrize("extra,message", [
    (["--halt-list", "sampler:0.1"], r"--halt-list studies halting rules against fixed loop counts for --eval"),
    (["--eval", "--halt-list", "kl:0.1"], r"--halt-list kl is not a rule of the flow family: use sampler or latent"),
    (["--eval", "--halt-list", "sampler"], r"--halt 'sampler': write RULE:τ"),
    (["--eval", "--halt-list", "sampler:0.1", "--calib-n", "0"], r"--calib-n must be"),
    (["--eval", "--halt-list", "sampler:0.1", "--boot", "0"], r"--boot must be"),
    (["--eval", "--halt-cap", "2"], r"--halt-cap caps the rules of --halt-list"),
    (["--eval", "--halt-list", "sampler:0.1", "--max-loops", "2"], r"--max-loops must be at least 3"),
    (["--eval", "--halt-list", "sampler:0.1", "--halt-cap", "0"], r"--halt-cap must be an integer loop count"),
    (["--eval", "--halt-list", "sampler:0.1", "--uncond-loops", "1", "--cfg", "2"],
     r"--halt-list decides the loops of both guidance rows together"),
    (["--eval", "--features", "inception", "--halt-list", "sampler:0.1"],
     r"--halt-list bootstraps FD in the classifier's features: add classifier to --features"),
], ids=["no eval", "masked rule", "no tau", "calib 0", "boot 0", "cap alone", "max-loops below cap", "cap 0",
        "uncond loops", "no classifier features"])
def test_bad_halt_list_input_gets_one_clear_line(studied, extra, message, tmp_path, capsys):
    root, _ = studied
    cls = [] if extra[0] == "--halt-list" else ["--classifier", root / "cls"]  # a classifier alone means --eval
    argv = ["anytime", root / "run", "--out", tmp_path / "o", *cls, "--steps", "2", *extra]
    assert_one_clear_line(argv, message, (root / "run", tmp_path), capsys)


def test_halt_list_studies_one_run(studied, tmp_path, capsys):
    root, out = studied
    argv = ["anytime", root / "run", out / "anytime.json", "--out", tmp_path / "o", "--eval", "--classifier",
            root / "cls", "--halt-list", "sampler:0.1"]
    assert_one_clear_line(argv, r"--halt-list studies one trained run: pass exactly one run folder",
                          (root / "run", tmp_path), capsys)


def test_plan_measure_makes_the_missing_table(studied, tmp_path, capsys):
    """`elt plan RUN --measure --classifier CLS`: a run without an any-time table is measured, then planned."""
    import shutil

    root, _ = studied
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    assert main(["plan", str(run), "--gflops", "1e6", "--measure", "--classifier", str(root / "cls"),
                 "--per-class", "2"]) == 0
    table = json.loads((run / "anytime" / "anytime.json").read_text())
    assert [row["loops"] for row in table["runs"][0]["results"]] == [1, 2, 3, 4, 5]  # L = 1 .. L_max + 2
    assert "<- chosen" in capsys.readouterr().out
