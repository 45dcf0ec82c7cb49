"""AdamW for the generator: one parameter group, or nanoGPT's decay / no-decay split when weight_decay > 0.

With weight decay, only the weight matrices of linear (and convolution) layers decay; biases, norms,
embedding tables, positional tables and every other parameter do not. With weight_decay = 0 (the default)
there is one group, as before, so old runs resume bit for bit. `load_optimizer_state` also takes a state
saved with the other layout (one group <-> two groups) and re-indexes it by parameter.
"""
from __future__ import annotations

import torch
from torch import nn

DECAYING = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def decay_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(parameters that decay, parameters that do not), each in model.parameters() order."""
    decay = set()
    for module in model.modules():
        if isinstance(module, DECAYING) and getattr(module, "weight", None) is not None and module.weight.dim() >= 2:
            decay.add(id(module.weight))
    params = [p for p in model.parameters()]
    return [p for p in params if id(p) in decay], [p for p in params if id(p) not in decay]


def _groups(model: nn.Module, weight_decay: float, split: bool) -> list[dict]:
    if not split:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay, no_decay = decay_split(model)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, t) -> torch.optim.AdamW:
    """AdamW with the TrainConfig's lr, betas and weight decay (split groups only when it is > 0)."""
    return torch.optim.AdamW(_groups(model, t.weight_decay, t.weight_decay > 0), lr=t.lr, betas=t.betas,
                             weight_decay=t.weight_decay)


def load_optimizer_state(opt: torch.optim.Optimizer, model: nn.Module, state: dict) -> None:
    """opt.load_state_dict(state), first re-indexing a state saved with the other group layout."""
    opt.load_state_dict(in_own_layout(opt, model, state))


def in_own_layout(opt: torch.optim.Optimizer, model: nn.Module, state: dict) -> dict:
    """A saved optimizer state dict, re-indexed to `opt`'s group layout if it was saved with the other one."""
    saved_groups, own_groups = state["param_groups"], opt.param_groups
    if len(saved_groups) != len(own_groups) and {len(saved_groups), len(own_groups)} == {1, 2}:
        return _relayout(state, model, opt)
    return state


def _relayout(state: dict, model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """The state dict of `state` (one group, or the two-group split) in `opt`'s layout."""
    old_order = [p for g in _groups(model, 0.0, split=len(state["param_groups"]) == 2) for p in g["params"]]
    old_index = {id(p): i for i, p in enumerate(old_order)}
    template = {k: v for k, v in state["param_groups"][0].items() if k not in ("params", "weight_decay")}
    groups, new_state, i = [], {}, 0
    for group in opt.param_groups:
        ids = []
        for p in group["params"]:
            if old_index[id(p)] in state["state"]:
                new_state[i] = state["state"][old_index[id(p)]]
            ids.append(i)
            i += 1
        groups.append({**template, "weight_decay": group["weight_decay"], "params": ids})
    return {"state": new_state, "param_groups": groups}
