"""The shared training step: the ILSD step plan, one loss composition for trainer and benchmark, the step guard
and its single host read per step."""
from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

from elt.objectives.ilsd import draw_latents, draw_student_loops, ilsd_lambda
from elt.rng import step_generator
from elt.train import Trainer, TrainingError, batch_indices
from elt.train.step import StepPlan, check_step, plan_step

GUARD_READS = 1  # host reads of one non-log training step: the step guard's single transfer


# ---- the plan ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["ilsd", "vanilla", "baseline"])
def test_plan_step_per_mode(make_config, mode):
    t = make_config(f"train.mode={mode}", "train.loops=3", "train.steps=10", "train.seed=5").train
    for step in (0, 4, 9):
        plan = plan_step(t, step)
        if mode == "ilsd":
            l_int = draw_student_loops(5, step, 1, 3)
            assert plan == StepPlan(3, (l_int, 3), l_int, ilsd_lambda(step, 10))
        else:
            loops = 1 if mode == "baseline" else 3
            assert plan == StepPlan(loops, (loops,), None, None)


LATENT = ("model.patch=2", "model.latent.window=2", "model.latent.latents_per_group=3")  # 4×4 tokens, G = 4, J_max 3


@pytest.mark.parametrize("mode", ["ilsd", "vanilla", "baseline"])
def test_the_latent_budget_is_drawn_from_seed_and_step_beside_the_loop_draw(make_config, mode):
    """J̃ ~ U{min_latents..J_max} from (seed, step) alone, on its own stream: the loop plan is the one without it."""
    cfg = make_config(f"train.mode={mode}", "train.loops=3", "train.steps=10", "train.seed=5", *LATENT)
    assert cfg.latent_range == (1, 3)
    draws = []
    for step in range(60):
        plan = plan_step(cfg.train, step, cfg.latent_range)
        assert plan == plan_step(cfg.train, step, cfg.latent_range)  # a function of (seed, step): every rank, resume
        assert dataclasses.replace(plan, latents=None) == plan_step(cfg.train, step)
        assert plan.latents == draw_latents(5, step, 1, 3)
        # stream 2 of the step (elt.rng's frozen table): not L_int's stream 1, so the two draws are independent
        assert plan.latents == int(torch.randint(1, 4, (1,), generator=step_generator(5, step, stream=2)))
        draws.append(plan.latents)
    assert set(draws) == {1, 2, 3}
    other = make_config("train.seed=6", *LATENT)
    assert [plan_step(other.train, s, other.latent_range).latents for s in range(60)] != draws
    narrow = make_config("train.min_latents=3", *LATENT)
    assert {plan_step(narrow.train, s, narrow.latent_range).latents for s in range(20)} == {3}  # J_min = J_max: ELT
    assert make_config().latent_range is None and plan_step(make_config().train, 0).latents is None


def test_a_latent_model_trains_at_the_drawn_budget(make_config, tiny_dataset, tmp_path, monkeypatch):
    """Student and teacher of a step both run at the step's J̃ (one forward to both exits)."""
    from elt.models.flow import FlowTransformer

    cfg = make_config("train.steps=4", *LATENT)
    t = Trainer(cfg, tmp_path / "r", progress=False)
    seen = []
    forward = FlowTransformer.forward

    def spy(self, x, tt, y, loops, exits=None, latents=None):
        seen.append((loops, tuple(exits), latents))
        return forward(self, x, tt, y, loops, exits, latents)

    monkeypatch.setattr(FlowTransformer, "forward", spy)
    for step in range(4):
        plan = plan_step(cfg.train, step, cfg.latent_range)
        res = t.train_step(step)
        assert seen[-1] == (plan.loops, plan.exits, plan.latents) and plan.latents is not None
        assert res.loss == res.loss  # finite (the guard checked it)


# ---- host reads ----------------------------------------------------------------------------------------------------

class HostReads:
    """Counts tensor -> host conversions (item, float, int, bool, tolist, numpy) while active, by calling module.

    Two kinds of reads never touch the accelerator and are not counted: AdamW's step counters (CPU tensors
    by design, read in torch.optim) and the student's loop count (drawn on a CPU generator in
    elt.objectives.ilsd)."""

    CPU_ONLY = ("torch.optim.", "elt.objectives.ilsd")

    METHODS = ("item", "__float__", "__int__", "__bool__", "tolist", "numpy")

    def __init__(self, monkeypatch):
        self.calls = []
        self.active = False
        for name in self.METHODS:
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(name, real))

    def _counting(self, name, real):
        def method(tensor, *args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if self.active and not caller.startswith(self.CPU_ONLY):
                self.calls.append(f"{name} in {caller}")
            return real(tensor, *args, **kwargs)
        return method


@pytest.mark.parametrize("mode", ["ilsd", "vanilla"])
def test_a_training_step_reads_the_host_once(make_config, tiny_dataset, tmp_path, monkeypatch, mode):
    """Outside log steps a step makes one host read (the guard); the loss terms stay on the device until read.
    Before the split it made 9 (ILSD) / 7 (vanilla): isfinite(loss), isfinite(grad norm), two weight norms,
    loss.item(), each term's .item() and float(grad norm)."""
    t = Trainer(make_config(f"train.mode={mode}", "train.steps=10"), tmp_path / "r", progress=False)
    batches = {s: t._batch(s) for s in range(3)}  # data preparation is the prefetch thread's, not the step's
    t._batch = batches.__getitem__
    t.train_step(0)  # first step: lazy initialisation (optimizer state) is not what is pinned
    reads = HostReads(monkeypatch)
    reads.active = True
    res = t.train_step(1)
    reads.active = False
    assert len(reads.calls) == GUARD_READS, reads.calls
    reads.calls.clear()
    reads.active = True
    parts = res.parts  # the log step's read: all terms at once
    reads.active = False
    assert len(reads.calls) == 1 and set(parts) >= {"gt_teacher"}
    assert res.loss == pytest.approx(parts["gt_teacher"] if mode == "vanilla" else
                                     parts["gt_teacher"] + res.lam * parts["gt_student"]
                                     + (1 - res.lam) * parts["distill"], rel=1e-5)


# ---- the guard -------------------------------------------------------------------------------------------------

def _check(loss=1.0, gn=1.0, before=10.0, after=10.5):
    return check_step(7, torch.tensor(loss), torch.tensor(gn), torch.tensor(before), torch.tensor(after), 1e-3)


def test_check_step_passes_a_good_step_and_names_each_fault():
    h = _check()
    assert (h.loss, h.grad_norm, h.weights_before, h.weights_after) == (1.0, 1.0, 10.0, 10.5)
    with pytest.raises(TrainingError, match="the loss became nan at step 7"):
        _check(loss=float("nan"), gn=float("nan"))  # the loss is named first
    with pytest.raises(TrainingError, match="the loss became inf at step 7"):
        _check(loss=float("inf"))
    with pytest.raises(TrainingError, match="the gradient became inf at step 7"):
        _check(gn=float("inf"))
    with pytest.raises(TrainingError, match="step 7 made the weights explode"):
        _check(after=21.5)
    with pytest.raises(TrainingError, match="step 7 made the weights explode"):
        _check(after=float("nan"))
    assert _check(after=20.9).weights_after == pytest.approx(20.9)


def test_a_non_finite_gradient_stops_before_the_ema_and_any_checkpoint(make_config, tiny_dataset, tmp_path,
                                                                      monkeypatch):
    t = Trainer(make_config("train.steps=8", "train.ckpt_every=2", "train.grad_clip=0"), tmp_path / "run",
                progress=False)
    real = torch.nn.utils.clip_grad_norm_

    def poisoned(params, max_norm, *a, **k):
        gn = real(params, max_norm, *a, **k)
        return gn * float("inf") if t.step >= 3 else gn

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", poisoned)
    ema_before = {}
    real_update = t.ema.update

    def update(model, step):
        ema_before[step] = True
        return real_update(model, step)

    t.ema.update = update
    with pytest.raises(TrainingError, match="the gradient became inf at step 3"):
        t.fit()
    assert sorted(ema_before) == [0, 1, 2]  # the EMA never saw step 3
    assert (tmp_path / "run" / "latest").read_text().strip() == "step_0000002"


# ---- one loss composition for the trainer and the benchmark ---------------------------------------------------

def test_benchmark_step_computes_the_trainers_loss(make_config, tiny_dataset, tmp_path):
    from elt.bench.workloads import Contestant, train_step as bench_step
    from elt.bench.flops import flow_arch

    cfg = make_config("train.steps=10", "train.label_dropout=0")
    t = Trainer(cfg, tmp_path / "r", progress=False)
    b = t._batch(0)
    # inputs that make the objective's training_inputs reproduce the trainer's batch 0
    g = step_generator(cfg.train.seed, 0)
    n = cfg.train.batch_size
    noise, u = torch.randn(n, 1, 8, 8, generator=g), torch.randn(n, generator=g)
    images, labels = t.data.get_batch(batch_indices(0, n, len(t.data), cfg.train.seed))
    inputs = {"x0": images.float() / 127.5 - 1.0, "noise": noise, "u": u, "y": labels}
    x_t, *_ = t.family.process.training_inputs(inputs["x0"], noise, u)
    assert torch.equal(x_t, b["x_t"])
    arch = flow_arch(cfg.model, 2, 3)
    c = Contestant("elt", "elt", t.model, 3, "ilsd", arch, arch)
    c.opt = torch.optim.SGD(t.model.parameters(), lr=0.0)  # the weights stay put
    bench_loss = bench_step(c, cfg, inputs, lambda: torch.autocast("cpu", enabled=False), eager=True)()
    res = t.train_step(0)
    assert bench_loss.item() == pytest.approx(res.loss, rel=1e-6)
    forced = bench_step(c, cfg, inputs, lambda: torch.autocast("cpu", enabled=False), eager=True)
    assert forced(2).item() != pytest.approx(forced(1).item(), rel=1e-6)  # run(l_int) forces the student
