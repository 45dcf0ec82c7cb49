"""AdamW parameter groups: one group without weight decay (bit-identical to before), nanoGPT's decay / no-decay
split with it, and optimizer states saved with the other layout still resume."""
from __future__ import annotations

import torch

from elt.checkpoint import find_checkpoint, load_train_state
from elt.train import Trainer
from elt.train.optim import build_optimizer, decay_split, load_optimizer_state


def test_no_weight_decay_keeps_one_group(make_config):
    from elt.models import build_model

    cfg = make_config()
    model = build_model(cfg)
    opt = build_optimizer(model, cfg.train)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"] == list(model.parameters())


def test_weight_decay_skips_biases_norms_embeddings_and_positions(make_config):
    from elt.models import build_model

    for cfg in (make_config("train.weight_decay=0.1", "model.pos_embed=learned"),):
        model = build_model(cfg)
        opt = build_optimizer(model, cfg.train)
        decay, no_decay = decay_split(model)
        names = {id(p): n for n, p in model.named_parameters()}
        assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
        assert [len(g["params"]) for g in opt.param_groups] == [len(decay), len(no_decay)]
        assert len(decay) + len(no_decay) == len(list(model.parameters()))
        assert all(p.dim() == 2 for p in decay)
        no = {names[id(p)] for p in no_decay}
        assert any(n.endswith(".bias") for n in no) and "y_embed.table.weight" in no and "pos" in no
        assert "core.blocks.0.attn.qkv.weight" in {names[id(p)] for p in decay}


def test_weight_decay_leaves_no_decay_parameters_alone(make_config, tiny_dataset, tmp_path):
    """With a zero gradient (lr > 0), AdamW's decay alone moves the weights: only the decaying group shrinks."""
    t = Trainer(make_config("train.weight_decay=0.5"), tmp_path / "r", progress=False)
    decay, no_decay = decay_split(t.model)
    before = [p.detach().clone() for p in t.model.parameters()]
    for p in t.model.parameters():
        p.grad = torch.zeros_like(p)
    t.opt.step()
    moved = {id(p) for p, b in zip(t.model.parameters(), before) if not torch.equal(p, b)}
    assert moved and moved <= {id(p) for p in decay}
    assert not moved & {id(p) for p in no_decay}


def test_a_single_group_optimizer_state_resumes_into_split_groups(make_config, tiny_dataset, tmp_path):
    over = ("train.weight_decay=0.1", "train.steps=4", "train.ckpt_every=2")
    run = tmp_path / "run"
    old = Trainer(make_config(*over), run, progress=False)
    t = old.cfg.train
    old.opt = torch.optim.AdamW(old.model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    for step in range(2):  # what a run written before the split saved: one group
        old.train_step(step)
        old.step += 1
    old.save()
    old.close()
    saved = load_train_state(find_checkpoint(run))["optimizer"]
    assert len(saved["param_groups"]) == 1

    new = Trainer(make_config(*over), run, resume=True, progress=False)
    assert new.step == 2 and [g["weight_decay"] for g in new.opt.param_groups] == [0.1, 0.0]
    positions = {id(p): i for i, p in enumerate(new.model.parameters())}
    for group in new.opt.param_groups:
        for p in group["params"]:
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(new.opt.state[p][key], saved["state"][positions[id(p)]][key]), key
    new.fit()  # and it trains on
    assert load_train_state(find_checkpoint(run))["step"] == 4


def test_split_state_loads_back_into_one_group(make_config):
    from elt.models import build_model

    model = build_model(make_config())
    split = build_optimizer(model, make_config("train.weight_decay=0.1").train)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    split.step()
    one = build_optimizer(model, make_config().train)
    load_optimizer_state(one, model, split.state_dict())
    for p in model.parameters():
        assert torch.equal(one.state[p]["exp_avg"], split.state[p]["exp_avg"])
