"""Per-sample adaptive loops (`elt sample --halt RULE:τ --halt-cap L`, flow family): a sample's prediction is the
fixed-L prediction at the loops it used, whatever else shares its batch; τ = 0 runs the cap, τ = inf exits at
loop 2; guidance pairs exit together; the whole sampler equals a fixed per-step schedule at the sample's exits;
the CLI records the loops and the counted GFLOPs; bad --halt input gets a clear error."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import randomize_
from elt.budget import Budget
from elt.cli import main
from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.objectives.flow import Diffusion, ObjectiveConfig, RectifiedFlow
from elt.sampling import flow as flow_sampling
from elt.sampling.adaptive import HaltRule, adaptive_predict
from elt.sampling.common import guided_call, network_fn


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(FlowTransformer(FlowModelConfig(image_size=8, channels=1, patch=4, dim=32, heads=2, blocks=2,
                                                      mlp_ratio=2.0, num_classes=3)), std=0.15).eval()


def _inputs(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.rand(n, generator=g), torch.arange(n) % 3


def _fixed(model, x, t, y, loops: int, cfg: float) -> torch.Tensor:
    return guided_call(network_fn(model), (x, t), y, Budget(loops), None, cfg, null_label=model.null_label).float()


CLOSE = {"rtol": 1e-4, "atol": 1e-5}  # float rounding: CPU matmuls of other batch sizes sum in another order


@pytest.mark.parametrize("kind,tau,cfg", [("sampler", 0.1, 1.0), ("sampler", 0.2, 3.0), ("latent", 0.3, 3.0)])
def test_each_sample_equals_the_fixed_call_at_its_loops(model, kind, tau, cfg):
    """With guidance this also pins that a sample's two rows exit together: an unconditional row that kept (or
    stopped) looping on its own would not give the guided fixed-L prediction."""
    x, t, y = _inputs(8)
    pred, used = adaptive_predict(model, (x, t), y, HaltRule(kind, tau, 5), cfg, coef=0.5)
    assert len(set(used.tolist())) > 1, used  # the rule really differs between samples here
    for b in range(8):
        fixed = _fixed(model, x[b:b + 1], t[b:b + 1], y[b:b + 1], int(used[b]), cfg)
        torch.testing.assert_close(pred[b:b + 1], fixed, **CLOSE)


def test_results_do_not_depend_on_the_batch(model):
    x, t, y = _inputs(7)
    rule = HaltRule("sampler", 0.2, 5)
    pred, used = adaptive_predict(model, (x, t), y, rule, 3.0, coef=0.5)
    assert len(set(used.tolist())) > 1, used
    order = torch.tensor([6, 2, 0, 5])  # another batch: a subset, in another order
    pred2, used2 = adaptive_predict(model, (x[order], t[order]), y[order], rule, 3.0, coef=0.5)
    assert torch.equal(used2, used[order])
    torch.testing.assert_close(pred2, pred[order], **CLOSE)


def test_tau_zero_runs_the_cap_and_tau_inf_exits_at_the_first_judged_loop(model):
    x, t, y = _inputs(5)
    assert adaptive_predict(model, (x, t), y, HaltRule("sampler", 0.0, 4), 2.0)[1].tolist() == [4] * 5
    assert adaptive_predict(model, (x, t), y, HaltRule("sampler", float("inf"), 4), 2.0)[1].tolist() == [2] * 5
    assert adaptive_predict(model, (x, t), y, HaltRule("latent", float("inf"), 1), 2.0)[1].tolist() == [1] * 5


@pytest.mark.parametrize("objective,tau", [("rectified_flow", 0.08), ("diffusion", 0.08)])
def test_the_sampler_equals_a_fixed_schedule_at_the_samples_exits(model, objective, tau):
    """A halted sample is the fixed per-step schedule of the loops it used at each step, drawn alone (up to one
    grey level: float rounding of other batch sizes)."""
    process = (RectifiedFlow if objective == "rectified_flow" else Diffusion)(ObjectiveConfig(kind=objective))
    labels = torch.tensor([0, 1, 2, 0])
    trace = []
    images = flow_sampling.sample_images(model, process, labels, 4, 5, cfg=2.0, seed=3, batch_size=4,
                                         halt=HaltRule("sampler", tau, 4), trace=trace)
    loops = torch.cat(trace, 1)  # (steps, N)
    assert loops.shape == (5, 4) and len(set(loops.flatten().tolist())) > 1
    for b in range(4):
        alone = flow_sampling.sample_images(model, process, labels[b:b + 1], loops[:, b].tolist(), 5, cfg=2.0,
                                            seed=3, batch_size=1, first_index=b)
        assert (alone[0].int() - images[b].int()).abs().max() <= 1, b


def test_cli_records_loops_and_gflops(trained_flow_run, tmp_path):
    run = trained_flow_run
    common = ["--num-samples", "6", "--steps", "4", "--cfg", "2"]
    assert main(["sample", str(run), *common, "--out", str(tmp_path / "fixed.npz")]) == 0
    assert main(["sample", str(run), *common, "--halt", "sampler:0.05", "--out", str(tmp_path / "halt.npz")]) == 0
    assert main(["sample", str(run), *common, "--halt", "sampler:0", "--out", str(tmp_path / "cap.npz")]) == 0
    fixed, halt, cap = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("fixed", "halt", "cap"))
    assert halt["halt"] == {"rule": "sampler", "tau": 0.05, "cap": 3} and len(halt["mean_loops_per_step"]) == 4
    assert cap["mean_loops_per_call"] == 3  # τ = 0: every call at the cap (L_max = 3)
    assert halt["mean_loops_per_call"] < 3 and halt["gflops_per_sample"] < fixed["gflops_per_sample"]
    # at the cap the count is the fixed run's plus the readouts that judged loops 1 and 2
    assert cap["gflops_per_sample"] > fixed["gflops_per_sample"]


@pytest.fixture(scope="module")
def trained_flow_run(tiny_cfg_dict, tmp_path_factory):
    import yaml

    root = tmp_path_factory.mktemp("halt_run")
    (root / "c.yaml").write_text(yaml.safe_dump(tiny_cfg_dict()))
    assert main(["train", str(root / "c.yaml"), "train.steps=3", "train.lr=0.01", "--out", str(root / "run"),
                 "--no-progress"]) == 0
    return root / "run"


@pytest.mark.parametrize("extra,message", [
    (["--halt", "sampler"], r"--halt 'sampler': write RULE:τ with RULE one of sampler, latent"),
    (["--halt", "kl:0.1"], r"--halt kl is not a rule of the flow family: use sampler or latent"),
    (["--halt", "ponder:0.1"], r"--halt 'ponder:0\.1': write RULE:τ"),
    (["--halt", "sampler:-1"], r"--halt 'sampler:-1': write RULE:τ .*τ a number >= 0"),
    (["--halt", "sampler:0.1", "--halt-cap", "0"], r"--halt-cap must be an integer loop count >= 1, got 0"),
    (["--halt-cap", "2"], r"--halt-cap caps the loops of --halt: pass --halt RULE:τ too"),
    (["--halt", "sampler:0.1", "--loops", "2"], r"--halt picks every sample's loops itself .*: drop --loops"),
], ids=["no tau", "masked rule on flow", "unknown rule", "negative tau", "cap 0", "cap alone", "with --loops"])
def test_bad_halt_input_gets_one_clear_line(trained_flow_run, extra, message, tmp_path, capsys):
    from conftest import assert_one_clear_line

    argv = ["sample", trained_flow_run, "--num-samples", "2", "--steps", "2", "--out", tmp_path / "x.npz", *extra]
    assert_one_clear_line(argv, message, (trained_flow_run, tmp_path), capsys)


def test_forced_exits_replay_a_halted_run(model):
    """The shuffled-exit control's mechanism: forcing each sample's own exits reproduces the halted run, and
    forcing a permutation of them gives every sample another sample's loops."""
    from elt.sampling.adaptive import ForcedExits

    process = RectifiedFlow(ObjectiveConfig())
    labels = torch.tensor([0, 1, 2, 0, 1])
    trace = []
    halted = flow_sampling.sample_images(model, process, labels, 4, 5, cfg=2.0, seed=3, batch_size=5,
                                         halt=HaltRule("sampler", 0.08, 4), trace=trace)
    loops = torch.cat(trace, 1)
    replay_trace = []
    replay = flow_sampling.sample_images(model, process, labels, 4, 5, cfg=2.0, seed=3, batch_size=2,
                                         halt=ForcedExits(loops, 4), trace=replay_trace)
    assert torch.equal(torch.cat(replay_trace, 1), loops)
    assert (replay.int() - halted.int()).abs().max() <= 1
    shifted = loops[:, [1, 2, 3, 4, 0]]
    forced_trace = []
    flow_sampling.sample_images(model, process, labels, 4, 5, cfg=2.0, seed=3, batch_size=5,
                                halt=ForcedExits(shifted, 4), trace=forced_trace)
    assert torch.equal(torch.cat(forced_trace, 1), shifted)


@pytest.mark.parametrize("kind,tau", [("sampler", 0.06), ("latent", 0.25)])
def test_a_latent_interface_model_halts_on_its_latents(kind, tau):
    """ELIT (the core loops on latents between a head and a tail): each sample equals the model's own fixed-L
    forward at the full latent budget, with guidance pairs exiting together."""
    from elt.models.latent import LatentConfig

    torch.manual_seed(0)
    elit = randomize_(FlowTransformer(FlowModelConfig(image_size=8, channels=1, patch=2, dim=32, heads=2, blocks=2,
                                                      mlp_ratio=2.0, num_classes=3,
                                                      latent=LatentConfig(window=2, latents_per_group=3))),
                      std=0.15).eval()
    x, t, y = _inputs(8)
    pred, used = adaptive_predict(elit, (x, t), y, HaltRule(kind, tau, 5), 3.0, coef=0.5)
    assert len(set(used.tolist())) > 1, used
    for b in range(8):
        torch.testing.assert_close(pred[b:b + 1], _fixed(elit, x[b:b + 1], t[b:b + 1], y[b:b + 1], int(used[b]), 3.0),
                                   **CLOSE)


def test_elit_halting_counts_write_and_tail_per_judged_loop(tiny_latent_run, tmp_path):
    """At τ = 0 (every call at the cap) an ELIT run costs the fixed run plus, per judged loop, Write, the tail
    blocks and the output layer: more than the plain readout alone."""
    from elt.anytime import forward_flops
    from elt.bench.flops import count_flops
    from elt.models import from_pretrained

    _, run = tiny_latent_run
    common = ["--num-samples", "3", "--steps", "2", "--cfg", "2"]
    assert main(["sample", str(run), *common, "--out", str(tmp_path / "f.npz")]) == 0
    assert main(["sample", str(run), *common, "--halt", "sampler:0", "--out", str(tmp_path / "h.npz")]) == 0
    fixed, cap = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("f", "h"))
    assert cap["mean_loops_per_call"] == 3
    model, _ = from_pretrained(run)
    h, c = model.embed(*model.example_inputs(1))
    kept, lat = model.latent.enter(h, c, model.latent.check_latents(None))
    tail = model.latent.tail_mods(c)  # once per call, as in the fixed forward
    judge = count_flops(lambda: model.readout(model.latent.leave(kept, lat, tail), c))[0]
    assert judge > count_flops(lambda: model.readout(h, c))[0]
    want = 2 * 2 * (forward_flops(model, 3) + 2 * judge) / 1e9  # 2 steps, 2 guidance rows, loops 1 and 2 judged
    assert cap["gflops_per_sample"] == pytest.approx(want, rel=1e-3)
    assert fixed["gflops_per_sample"] == pytest.approx(2 * 2 * forward_flops(model, 3) / 1e9, rel=1e-3)
