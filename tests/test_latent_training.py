"""Training along the latent axis: the per-step draw J̃ ~ U{min_latents..max_latents} (a function of (seed, step),
the same on every rank and on resume), the latent_teacher=full ablation (student at (L_int, J̃), teacher at
(L_max, J_max) in a second forward), the logged J̃ and GFLOPs, and the analytic FLOPs of the latent path."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file

from elt.bench.flops import analytic_forward_flops, count_flops, flow_arch
from elt.checkpoint import find_checkpoint, load_train_state
from elt.models import build_model
from elt.models.flow import FlowTransformer
from elt.objectives.ilsd import draw_latents, draw_student_loops, ilsd_loss
from elt.train import Trainer
from elt.train.step import compute_loss, plan_step

from conftest import interrupt_at

# the tiny model at patch 2: a 4×4 token grid in 2×2 windows, G = 4 groups, J_max = 5 latents per group
LATENT = ("model.patch=2", "model.latent.window=2", "model.latent.latents_per_group=5")
J_MAX = 5


# ---- (a), (d) the draw ----------------------------------------------------------------------------------------

def test_the_draw_is_a_function_of_seed_and_step_and_covers_its_range(make_config):
    cfg = make_config("train.seed=7", "train.min_latents=2", *LATENT)
    assert cfg.latent_range == (2, J_MAX)
    first = [plan_step(cfg.train, s, cfg.latent_range, cfg.j_max).latents for s in range(80)]
    torch.manual_seed(123)  # the global RNG plays no part
    torch.rand(5)
    again = [plan_step(cfg.train, s, cfg.latent_range, cfg.j_max).latents for s in reversed(range(80))][::-1]
    assert first == again == [draw_latents(7, s, 2, J_MAX) for s in range(80)]
    assert set(first) == set(range(2, J_MAX + 1))  # every budget of the range is trained
    other = make_config("train.seed=8", "train.min_latents=2", *LATENT)
    assert [plan_step(other.train, s, other.latent_range).latents for s in range(80)] != first


def test_max_latents_bounds_the_draw_and_not_the_full_teacher(make_config):
    cfg = make_config("train.min_latents=2", "train.max_latents=3", "train.latent_teacher=full", *LATENT)
    assert cfg.latent_range == (2, 3) and cfg.j_max == J_MAX
    plans = [plan_step(cfg.train, s, cfg.latent_range, cfg.j_max) for s in range(60)]
    assert {p.latents for p in plans} == {2, 3}
    assert {p.teacher_latents for p in plans} == {J_MAX}  # the full budget is the model's J_max, not the draw's
    assert make_config("train.max_latents=1", *LATENT).latent_range == (1, 1)
    assert make_config(*LATENT).latent_range == (1, J_MAX)  # unset: J_max


# ---- (c) latent_teacher=full ------------------------------------------------------------------------------------

def _spy(monkeypatch) -> list:
    seen, forward = [], FlowTransformer.forward

    def spy(self, x, t, y, loops, exits=None, latents=None):
        seen.append((loops, tuple(exits) if exits is not None else None, latents))
        return forward(self, x, t, y, loops, exits, latents)

    monkeypatch.setattr(FlowTransformer, "forward", spy)
    return seen


def test_the_full_teacher_runs_at_J_max_and_the_student_at_the_draw(make_config, tiny_dataset, tmp_path,
                                                                    monkeypatch, randomize):
    cfg = make_config("train.latent_teacher=full", "train.steps=20", "train.loops=3", *LATENT)
    t = Trainer(cfg, tmp_path / "r", progress=False)
    randomize(t.model)  # the zero-initialised layers would hide a budget mix-up
    seen = _spy(monkeypatch)
    steps = [s for s in range(20) if plan_step(cfg.train, s, cfg.latent_range).latents < J_MAX][:3]
    for step in steps:
        plan = plan_step(cfg.train, step, cfg.latent_range, cfg.j_max)
        J, l_int = plan.latents, plan.l_int
        assert J == draw_latents(0, step, 1, J_MAX) and l_int == draw_student_loops(0, step, 1, 3)
        batch = t._batch(step)
        seen.clear()
        loss, parts = compute_loss(t.family, t.model, batch, plan)
        assert seen == [(l_int, (l_int,), J), (3, (3,), J_MAX)]  # student at (L_int, J̃), teacher at (L_max, J_max)
        # the loss is ILSD composed by hand from the two calls
        x, tt, y = batch["x_t"], batch["t"], batch["y"]
        student = t.model(x, tt, y, loops=l_int, latents=J)
        teacher = t.model(x, tt, y, loops=3, latents=J_MAX)
        gt = lambda p: t.family.gt_loss(p, batch)  # noqa: E731
        hand = gt(teacher) + plan.lam * gt(student) + (1 - plan.lam) * t.family.dist_loss(student, teacher.detach(),
                                                                                          batch)
        assert torch.equal(loss, hand) and torch.equal(parts["gt_teacher"], gt(teacher))
        # the same gradients: the teacher's GT term trains the teacher (its J_max forward keeps its graph),
        # the distillation target does not
        names, params = zip(*t.model.named_parameters())
        ours = dict(zip(names, torch.autograd.grad(loss, params, allow_unused=True)))
        theirs = dict(zip(names, torch.autograd.grad(hand, params, allow_unused=True)))
        for k in names:
            assert (ours[k] is None) == (theirs[k] is None) and (ours[k] is None or torch.equal(ours[k], theirs[k])), k
        assert ours["latent.interface.read_layer.queries"][J:].abs().sum() > 0  # queries only the J_max teacher uses
        seen.clear()
        res = t.train_step(step)
        assert seen == [(l_int, (l_int,), J), (3, (3,), J_MAX)] and res.plan.teacher_latents == J_MAX


def test_at_J_max_one_forward_gives_the_two_forward_loss(make_config, tiny_dataset, tmp_path, monkeypatch,
                                                         randomize):
    cfg = make_config("train.latent_teacher=full", "train.steps=20", "train.loops=3", *LATENT)
    t = Trainer(cfg, tmp_path / "r", progress=False)
    randomize(t.model)
    step = next(s for s in range(20) if draw_latents(0, s, 1, J_MAX) == J_MAX)
    plan = plan_step(cfg.train, step, cfg.latent_range, cfg.j_max)
    assert plan.latents == J_MAX and plan.teacher_latents is None and plan.calls == [(3, plan.exits, J_MAX)]
    seen = _spy(monkeypatch)
    batch = t._batch(step)
    one, one_parts = compute_loss(t.family, t.model, batch, plan)
    assert seen == [(3, (plan.l_int, 3), J_MAX)]
    two, two_parts = compute_loss(t.family, t.model, batch, dataclasses.replace(plan, teacher_latents=J_MAX))
    assert len(seen) == 3  # the forced path: two forwards
    torch.testing.assert_close(two, one, rtol=1e-6, atol=0)
    for k in one_parts:
        torch.testing.assert_close(two_parts[k], one_parts[k], rtol=1e-6, atol=0)
    # `same` never runs a second forward
    same = make_config("train.steps=20", "train.loops=3", *LATENT)
    assert all(plan_step(same.train, s, same.latent_range, same.j_max).teacher_latents is None for s in range(20))


# ---- (b) every rank and a resumed run draw the same J̃ --------------------------------------------------------

def _latent_yaml(tiny_cfg_dict, tmp_path, **train) -> Path:
    d = tiny_cfg_dict()
    d["model"] |= {"patch": 2, "latent": {"window": 2, "latents_per_group": J_MAX}}
    d["train"] |= {"min_latents": 1, "log_every": 1, "ckpt_every": 100, "lr": 1e-3, "warmup_steps": 1, **train}
    path = tmp_path / "latent.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


SPY_RUN = """
import json, os, sys
from elt.config import load_config
from elt.models.flow import FlowTransformer
from elt.train import train
seen, forward = [], FlowTransformer.forward
def spy(self, x, t, y, loops, exits=None, latents=None):
    seen.append([loops, list(exits or []), latents])
    return forward(self, x, t, y, loops, exits, latents)
FlowTransformer.forward = spy
train(load_config(sys.argv[1]), sys.argv[2], progress=False)
with open(os.path.join(sys.argv[3], f"seen_{os.environ.get('RANK', '0')}.json"), "w") as f:
    json.dump(seen, f)
"""


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_two_gloo_ranks_draw_the_same_budgets_and_match_one_process(tiny_cfg_dict, tmp_path):
    from test_distributed import _free_port

    path = _latent_yaml(tiny_cfg_dict, tmp_path, steps=4, latent_teacher="full", label_dropout=0.25)
    script = tmp_path / "spy_run.py"
    script.write_text(textwrap.dedent(SPY_RUN))
    port = _free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}", str(script), str(path), str(tmp_path / "ddp"),
           str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (tmp_path / "one").mkdir()
    one = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "single"), str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"seen_{r}.json").read_text()) for r in (0, 1)]
    single = json.loads((tmp_path / "one" / "seen_0.json").read_text())
    from elt.config import load_config
    cfg = load_config(path)
    want = []
    for s in range(4):
        p = plan_step(cfg.train, s, cfg.latent_range, cfg.j_max)
        want += [[loops, list(exits), lat] for loops, exits, lat in p.calls]
    training_calls = lambda calls: [c for c in calls if c[1]]  # noqa: E731  (sample-grid calls have no exits)
    assert training_calls(ranks[0]) == training_calls(ranks[1]) == training_calls(single) == want
    assert len({tuple(c[1]) for c in want}) > 1 and {c[2] for c in want} != {J_MAX}  # the draws vary
    ddp = load_train_state(find_checkpoint(tmp_path / "ddp"))["model"]
    ref = load_train_state(find_checkpoint(tmp_path / "single"))["model"]
    for k, v in ref.items():
        torch.testing.assert_close(ddp[k], v, rtol=0, atol=1e-5, msg=f"raw weight {k}")


def test_a_resumed_latent_run_continues_bit_for_bit(make_config, tiny_dataset, tmp_path):
    over = ("train.steps=8", "train.ckpt_every=100", "train.log_every=1", "train.label_dropout=0.3", *LATENT)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    Trainer(make_config(*over), run_a, progress=False).fit()
    interrupt_at(Trainer(make_config(*over), run_b, progress=False), 4)
    assert load_train_state(find_checkpoint(run_b))["step"] == 4
    Trainer(make_config(*over), run_b, resume=True, progress=False).fit()
    rows = {name: [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
            for name, run in (("a", run_a), ("b", run_b))}
    budgets = [r["latents"] for r in rows["a"]]
    assert [r["latents"] for r in rows["b"]] == budgets == [draw_latents(0, s, 1, J_MAX) for s in range(8)]
    assert len(set(budgets)) > 1
    assert [r["loss"] for r in rows["a"]] == [r["loss"] for r in rows["b"]]
    sa, sb = (load_train_state(find_checkpoint(r)) for r in (run_a, run_b))
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    ema_a, ema_b = (load_file(str(find_checkpoint(r) / "model.safetensors")) for r in (run_a, run_b))
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


# ---- (e) the log ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("teacher", ["same", "full"])
def test_log_rows_record_the_budget_and_its_gflops(make_config, tiny_dataset, tmp_path, teacher):
    cap = ("train.max_latents=4",) if teacher == "full" else ()  # the full teacher still runs at J_max = 5
    cfg = make_config("train.steps=6", "train.log_every=2", f"train.latent_teacher={teacher}", *cap, *LATENT)
    run = tmp_path / "r"
    Trainer(cfg, run, progress=False).fit()
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    model = build_model(cfg)
    assert [r["step"] for r in rows] == [2, 4, 6]
    for r in rows:  # a row after step s logs step s - 1
        plan = plan_step(cfg.train, r["step"] - 1, cfg.latent_range, cfg.j_max)
        assert r["latents"] == plan.latents == draw_latents(0, r["step"] - 1, 1, cfg.latent_range[1])
        assert r.get("teacher_latents") == plan.teacher_latents
        x, t, y = model.example_inputs(2)
        with torch.no_grad():
            counted = sum(count_flops(lambda c=c: model(x, t, y, loops=c[0], exits=c[1], latents=c[2]))[0]
                          for c in plan.calls) / 2
        assert r["fwd_gflops"] == pytest.approx(counted / 1e9, rel=1e-9)
    if teacher == "full":
        assert {r["teacher_latents"] for r in rows} == {J_MAX}
    # a plain model logs its GFLOPs and no budget
    Trainer(make_config("train.steps=2", "train.log_every=2"), tmp_path / "plain", progress=False).fit()
    plain = json.loads((tmp_path / "plain" / "log.jsonl").read_text().splitlines()[0])
    assert "latents" not in plain and plain["fwd_gflops"] > 0


def test_a_latent_step_reads_the_host_once(make_config, tiny_dataset, tmp_path, monkeypatch):
    from test_train_step import GUARD_READS, HostReads

    t = Trainer(make_config("train.steps=10", "train.latent_teacher=full", *LATENT), tmp_path / "r", progress=False)
    batches = {s: t._batch(s) for s in range(3)}
    t._batch = batches.__getitem__
    t.train_step(0)
    reads = HostReads(monkeypatch)
    reads.active = True
    t.train_step(1)
    reads.active = False
    assert len(reads.calls) == GUARD_READS, reads.calls


# ---- (f) analytic FLOPs of the latent path ------------------------------------------------------------------------

@pytest.mark.parametrize("head,tail", [(1, 1), (0, 2)])
def test_analytic_latent_flops_equal_the_counted_ones_and_fall_with_J(make_config, head, tail):
    cfg = make_config(*LATENT, f"model.latent.head_blocks={head}", f"model.latent.tail_blocks={tail}",
                      "model.latent.mlp_ratio=2.0")
    model = build_model(cfg)
    x, t, y = model.example_inputs(3)
    for L in (1, 3):
        per_j = []
        for J in (1, 2, J_MAX):
            for exits in (None, (1, L) if L > 1 else None):
                with torch.no_grad():
                    counted = count_flops(lambda e=exits: model(x, t, y, loops=L, exits=e, latents=J))[0] / 3
                arch = flow_arch(cfg.model, cfg.model.blocks, L, 1 if exits is None else 2, latents=J)
                assert analytic_forward_flops(arch) == counted, (L, J, exits)
            per_j.append(analytic_forward_flops(flow_arch(cfg.model, cfg.model.blocks, L, latents=J)))
        assert per_j == sorted(per_j) and len(set(per_j)) == 3  # fewer latents, fewer FLOPs
    assert flow_arch(cfg.model, 2, 3) == flow_arch(cfg.model, 2, 3, latents=J_MAX)  # None: J_max
    with pytest.raises(ValueError, match="latents"):
        flow_arch(make_config().model, 2, 3, latents=2)
