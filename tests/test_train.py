"""Trainer: run-folder outputs, exact resume, resume errors, non-finite losses, per-rank batch slices."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from elt.checkpoint import CheckpointError, find_checkpoint, load_train_state
from elt.config import ConfigError
from elt.distributed import DistInfo
from elt.objectives.ilsd import draw_student_loops, ilsd_lambda
from elt.train import Trainer, TrainingError, batch_indices, learning_rate, train

from conftest import interrupt_at


def _state(run: Path):
    ckpt = find_checkpoint(run)
    return load_train_state(ckpt), load_file(str(ckpt / "model.safetensors")), ckpt


def _assert_same_tensors(a: dict, b: dict, what: str):
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


def _assert_same_optimizer(a: dict, b: dict):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for pid in a["state"]:
        sa, sb = a["state"][pid], b["state"][pid]
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), f"optimizer state {pid}.{k}"


# ---- one run writes a complete run folder ---------------------------------------------------------------------

def test_training_run_writes_run_folder(make_config, tiny_dataset, tmp_path):
    cfg = make_config("train.steps=6", "train.ckpt_every=2", "train.keep_checkpoints=2", "train.log_every=2")
    run = tmp_path / "run"
    summary = train(cfg, run, progress=False)
    assert summary["step"] == 6 and summary["stop"] == "steps"
    assert (run / "latest").read_text().strip() == "step_0000006"
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["step_0000004", "step_0000006"]  # older ones pruned, no temporary folders left
    for name in ("model.safetensors", "config.yaml", "state.pt"):
        assert (run / "checkpoints" / "step_0000006" / name).is_file()
    logs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [2, 4, 6]
    for r in logs:  # a line after step s logs the draws of step s - 1
        assert r["loss"] > 0 and r["student_loops"] == draw_student_loops(cfg.train.seed, r["step"] - 1, 1, 3)
        assert r["lambda"] == pytest.approx(ilsd_lambda(r["step"] - 1, 6))
        assert r["loss"] == pytest.approx(r["gt_teacher"] + r["lambda"] * r["gt_student"]
                                          + (1 - r["lambda"]) * r["distill"], rel=1e-5)
    pngs = list((run / "samples").glob("*.png"))
    assert [p.name for p in pngs] == ["step_0000006.png"]
    with Image.open(pngs[0]) as im:
        assert im.size[0] > 8 and im.size[1] > 8
    s = json.loads((run / "summary.json").read_text())
    assert s["step"] == 6 and s["stop"] == "steps" and "loss" in s
    state, ema, _ = _state(run)
    assert state["step"] == 6
    # training changed the weights; EMA differs from the raw weights
    torch.manual_seed(cfg.train.seed)
    from elt.models import build_model
    init = build_model(cfg).state_dict()
    assert any(not torch.equal(init[k], state["model"][k]) for k in init)
    assert any(not torch.equal(ema[k], state["model"][k]) for k in ema)


@pytest.mark.parametrize("mode", ["vanilla", "baseline"])
def test_other_modes_train(make_config, tiny_dataset, tmp_path, mode):
    cfg = make_config(f"train.mode={mode}", "train.steps=2")
    t = Trainer(cfg, tmp_path / mode, progress=False)
    res = t.train_step(0)
    assert res.student_loops is None and res.lam is None and res.loss > 0
    assert len(t.model.core.blocks) == (6 if mode == "baseline" else 2)


def test_ilsd_step_uses_exits_student_and_teacher(make_config, tiny_dataset, tmp_path):
    t = Trainer(make_config("train.loops=3", "train.steps=10"), tmp_path / "r", progress=False)
    t.model.core.block_calls = 0
    res = t.train_step(4)
    assert res.student_loops == draw_student_loops(0, 4, 1, 3)
    assert res.lam == pytest.approx(1 - 4 / 10)
    assert t.model.core.block_calls == 2 * 3  # one pass to L_max serves both exits
    assert set(res.parts) == {"gt_teacher", "gt_student", "distill"}


# ---- exact resume ---------------------------------------------------------------------------------------------

def test_exact_resume(make_config, tiny_dataset, tmp_path):
    over = ("train.steps=8", "train.ckpt_every=100", "train.label_dropout=0.3", "train.ema_decay=0.9",
            "train.sample_every=3")
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    Trainer(make_config(*over), run_a, progress=False).fit()

    tb = Trainer(make_config(*over), run_b, progress=False)
    interrupt_at(tb, 4)
    state_b4, _, ckpt4 = _state(run_b)
    assert ckpt4.name == "step_0000004" and state_b4["step"] == 4
    assert json.loads((run_b / "summary.json").read_text())["stop"] == "interrupted"

    tb2 = Trainer(make_config(*over), run_b, resume=True, progress=False)
    assert tb2.step == 4
    summary = tb2.fit()
    assert summary["step"] == 8

    sa, ema_a, _ = _state(run_a)
    sb, ema_b, _ = _state(run_b)
    assert sa["step"] == sb["step"] == 8
    _assert_same_tensors(sa["model"], sb["model"], "raw weights")
    _assert_same_tensors(ema_a, ema_b, "EMA weights")
    _assert_same_optimizer(sa["optimizer"], sb["optimizer"])
    # the interrupted run really was at a different point at step 4
    assert any(not torch.equal(state_b4["model"][k], sb["model"][k]) for k in sb["model"])
    # log lines for steps after the resume match the straight run
    log_a = {r["step"]: r["loss"] for r in map(json.loads, (run_a / "log.jsonl").read_text().splitlines())}
    log_b = {r["step"]: r["loss"] for r in map(json.loads, (run_b / "log.jsonl").read_text().splitlines())}
    assert log_a == log_b


def test_resume_on_empty_folder_errors(make_config, tiny_dataset, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="cannot resume.*no checkpoint found"):
        Trainer(make_config(), empty, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="cannot resume.*does not exist"):
        Trainer(make_config(), tmp_path / "missing", resume=True, progress=False)


@pytest.mark.parametrize("change", ["model.dim=64", "train.loops=2", "train.mode=vanilla", "model.blocks=3",
                                    "objective.kind=diffusion", "train.seed=1"])
def test_resume_with_other_architecture_errors(make_config, tiny_dataset, tmp_path, change):
    run = tmp_path / "run"
    train(make_config("train.steps=2"), run, progress=False)
    with pytest.raises(CheckpointError, match="another architecture, objective, mode, loop count or seed"):
        Trainer(make_config("train.steps=4", change), run, resume=True, progress=False)


def test_resume_with_longer_schedule_continues(make_config, tiny_dataset, tmp_path):
    run = tmp_path / "run"
    train(make_config("train.steps=2"), run, progress=False)
    with pytest.raises(CheckpointError, match=r"config differs \(train.steps 2 -> 4\).*--allow-changes"):
        train(make_config("train.steps=4"), run, resume=True, progress=False)
    summary = train(make_config("train.steps=4"), run, resume=True, progress=False, allow_changes=True)
    assert summary["step"] == 4
    assert _state(run)[0]["step"] == 4
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if "event" in line]
    assert events == [{"event": "resume_with_changes", "step": 2, "changed": {"train.steps": [2, 4]}}]


# ---- non-finite losses ---------------------------------------------------------------------------------------

def test_nan_loss_raises_and_keeps_last_good_checkpoint(make_config, tiny_dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    t = Trainer(make_config("train.steps=8", "train.ckpt_every=4"), run, progress=False)
    orig = t.family.process.gt_loss

    def poisoned(pred, target, weight):
        loss = orig(pred, target, weight)
        return loss * float("nan") if t.step >= 5 else loss

    monkeypatch.setattr(t.family.process, "gt_loss", poisoned)
    with pytest.raises(TrainingError, match="loss became nan at step 5"):
        t.fit()
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_0000004"]  # no half-written or temporary checkpoint
    assert not list(run.rglob(".tmp-*"))
    assert (run / "latest").read_text().strip() == "step_0000004"
    assert not (run / "summary.json").exists()
    # the kept checkpoint is loadable and resumable
    t2 = Trainer(make_config("train.steps=8", "train.ckpt_every=4"), run, resume=True, progress=False)
    assert t2.step == 4


def test_huge_learning_rate_raises_training_error(make_config, tiny_dataset, tmp_path):
    cfg = make_config("train.lr=1e30", "train.warmup_steps=0", "train.steps=20", "train.grad_clip=0",
                      "train.ckpt_every=100")
    with pytest.raises(TrainingError, match="lower train.lr"):
        Trainer(cfg, tmp_path / "run", progress=False).fit()
    assert not list((tmp_path / "run").rglob(".tmp-*"))


# ---- batches, ranks and schedules --------------------------------------------------------------------------------

def test_batch_slices_per_rank_concatenate_to_global_batch(make_config, tiny_dataset, tmp_path):
    t = Trainer(make_config("train.batch_size=8", "train.label_dropout=0.5"), tmp_path / "r", progress=False)
    for step in (0, 3, 11):
        full = t._batch(step)
        parts = []
        for rank in range(2):
            t.dist = DistInfo(rank=rank, world=2)
            parts.append(t._batch(step))
        t.dist = DistInfo()
        for name in ("x_t", "t", "y", "target", "weight"):
            assert parts[0][name].shape[0] == 4
            assert torch.equal(torch.cat([parts[0][name], parts[1][name]]), full[name]), (step, name)
    b = t._batch(0)
    assert b["x_t"].dtype == torch.float32 and ((b["t"] > 0) & (b["t"] < 1)).all()
    assert ((b["y"] >= 0) & (b["y"] <= t.model.null_label)).all()
    assert not torch.equal(t._batch(0)["x_t"], t._batch(1)["x_t"])  # a new draw every step


def test_label_dropout_uses_null_label(make_config, tiny_dataset, tmp_path):
    t = Trainer(make_config("train.batch_size=60", "train.label_dropout=0.5"), tmp_path / "r", progress=False)
    y = t._batch(0)["y"]
    n_null = int((y == t.model.null_label).sum())
    assert 10 < n_null < 50
    t0 = Trainer(make_config("train.batch_size=60", "train.label_dropout=0.0"), tmp_path / "r0", progress=False)
    assert not (t0._batch(0)["y"] == t0.model.null_label).any()


def test_batch_indices_are_epoch_permutations():
    n, b = 10, 4
    idx = torch.cat([batch_indices(s, b, n, seed=3) for s in range(5)])  # 20 = two epochs
    assert sorted(idx[:10].tolist()) == list(range(10))
    assert sorted(idx[10:].tolist()) == list(range(10))
    assert torch.equal(batch_indices(2, b, n, 3), batch_indices(2, b, n, 3))
    assert not torch.equal(batch_indices(0, b, n, 3), batch_indices(0, b, n, 4))


def test_learning_rate_schedule(make_config):
    cfg = make_config("train.lr=1e-3", "train.warmup_steps=4", "train.steps=20", "train.min_lr_ratio=0.1")
    assert learning_rate(0, cfg) == pytest.approx(2.5e-4)
    assert learning_rate(3, cfg) == pytest.approx(1e-3)
    assert learning_rate(4, cfg) == pytest.approx(1e-3)
    assert learning_rate(20, cfg) == pytest.approx(1e-4)
    lrs = [learning_rate(s, cfg) for s in range(4, 21)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    const = make_config("train.lr_schedule=constant", "train.warmup_steps=0", "train.lr=1e-3")
    assert learning_rate(0, const) == learning_rate(7, const) == pytest.approx(1e-3)


def test_trainer_rejects_mismatched_data(make_config, tiny_dataset, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="3 classes but model.num_classes=5"):
        Trainer(make_config("model.num_classes=5"), tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="gives items of shape"):
        Trainer(make_config("model.image_size=12"), tmp_path / "r2", progress=False)
    import elt.distributed
    monkeypatch.setattr(elt.distributed, "setup", lambda dev: DistInfo(rank=0, world=2))
    with pytest.raises(ConfigError, match="not divisible by the 2 processes"):
        Trainer(make_config("train.batch_size=7"), tmp_path / "r3", progress=False)


def test_student_loops_and_lambda_identical_on_every_rank(make_config, tiny_dataset, tmp_path):
    cfg = make_config("train.loops=4", "train.steps=10", "train.seed=3")
    seen = []
    for rank, world in ((0, 1), (0, 2), (1, 2)):
        t = Trainer(cfg, tmp_path / f"r{rank}{world}", progress=False)
        t.dist = DistInfo(rank=rank, world=world)
        seen.append([(r.student_loops, r.lam) for r in (t.train_step(s) for s in range(6))])
    assert seen[0] == seen[1] == seen[2]
    assert seen[0] == [(draw_student_loops(3, s, 1, 4), ilsd_lambda(s, 10)) for s in range(6)]


def test_bf16_autocast_step_runs_on_cpu(make_config, tiny_dataset, tmp_path):
    t = Trainer(make_config("train.precision=bf16"), tmp_path / "r", progress=False)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    res = t.train_step(0)
    assert res.loss > 0 and all(torch.isfinite(torch.tensor(v)) for v in res.parts.values())
    after = t.model.state_dict()
    assert all(after[k].dtype == torch.float32 for k in after)  # master weights stay fp32
    assert any(not torch.equal(before[k], after[k]) for k in after)
