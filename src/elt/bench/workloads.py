"""The benchmarked models ("contestants") and the two workloads: one sampling step and one training step.

The training step shares the trainer's step plan and loss composition (`elt.train.step`) and leaves out data
loading, the step guard and EMA: the objective's `training_inputs`, the model at the config's loop count
(ILSD: student and teacher exits from one pass), the project's loss, backward, gradient clipping and AdamW.
The diffusers peer gets the same objective and the plain ground-truth (flow-matching) loss.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import Config
from ..models import build_model
from ..objectives.flow import build_objective
from ..objectives.labels import drop_labels
from ..precision import autocast
from ..train.step import compute_loss, plan_step
from .flops import Arch, dit_arch, flow_arch


@dataclass
class Contestant:
    key: str  # "elt" | "baseline" | "peer"
    label: str  # for the table, e.g. "ELT 2x4 (ilsd)"
    module: nn.Module  # eager model (FLOP counting, memory probes)
    loops: int | None  # loops passed to forward; None for the peer (no loop argument)
    loss: str  # "ilsd" | "vanilla" | "gt" (plain flow-matching / ground-truth loss)
    fwd_arch: Arch
    train_arch: Arch
    net: nn.Module | None = None  # what is timed: `module`, or torch.compile(module)
    opt: torch.optim.Optimizer | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.net is None:
            self.net = self.module


def elt_config(cfg: Config) -> tuple[Config, list[str]]:
    """The looped model of a config: itself, or for a `baseline` config the same N×L trained with ILSD."""
    if cfg.train.mode != "baseline":
        return cfg, []
    t = cfg.train
    mode = "ilsd" if 1 <= t.min_loops < t.loops else "vanilla"
    note = (f"config train.mode=baseline: the ELT row is its looped {cfg.model.blocks}x{t.loops} counterpart, "
            f"trained with {mode}")
    return dataclasses.replace(cfg, train=dataclasses.replace(t, mode=mode)), [note]


def build_contestants(cfg: Config, device: torch.device, peer: bool = True) -> tuple[list[Contestant], str | None]:
    """ELT (N×L), its iso-compute baseline (N·L×1) and, if diffusers imports, the DiT peer (N·L layers).
    -> (contestants, why the peer was skipped or None)."""
    from .peer import PeerUnavailable, build_peer

    N, L = cfg.model.blocks, cfg.train.loops
    ecfg, notes = elt_config(cfg)
    mode = ecfg.train.mode
    torch.manual_seed(cfg.train.seed)
    train_arch = flow_arch(cfg.model, N, L, exits=2 if mode == "ilsd" else 1)  # ILSD: student + teacher heads
    elt = Contestant("elt", f"ELT {N}x{L} ({mode})", build_model(ecfg).to(device), L, mode,
                     flow_arch(cfg.model, N, L), train_arch, notes=notes)
    bcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mode="baseline"))
    torch.manual_seed(cfg.train.seed)
    base = Contestant("baseline", f"baseline {N * L}x1", build_model(bcfg).to(device), 1, "gt",
                      flow_arch(cfg.model, N * L, 1), flow_arch(cfg.model, N * L, 1))
    out, skipped = [elt, base], None
    if not peer:
        skipped = "--no-peer given"
    else:
        try:
            torch.manual_seed(cfg.train.seed)
            module, peer_notes = build_peer(cfg.model, N * L)
            arch = dit_arch(cfg.model, N * L)
            out.append(Contestant("peer", f"DiT peer {N * L}x1 (diffusers)", module.to(device), None, "gt", arch, arch,
                                  notes=peer_notes))
        except PeerUnavailable as e:
            skipped = str(e)
    for c in out:
        t = cfg.train
        c.opt = torch.optim.AdamW(c.module.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    return out, skipped


def autocast_factory(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A function that returns a fresh autocast context (the trainer's) for each step."""
    return lambda: autocast(device, precision)


def sample_inputs(cfg: Config, batch: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """x (B, *input_shape) noise-like, t (B,) in (0, 1), y (B,) class labels: one conditional sampling step,
    no CFG."""
    m, g = cfg.model, torch.Generator().manual_seed(seed)
    return {"x": torch.randn(batch, *m.input_shape, generator=g).to(device),
            "t": torch.rand(batch, generator=g).to(device),
            "y": torch.randint(0, m.num_classes, (batch,), generator=g).to(device)}


def train_inputs(cfg: Config, batch: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """x0 (B, *input_shape) in [-1, 1], noise, u (B,), labels with the config's label dropout (null label)."""
    m, g = cfg.model, torch.Generator().manual_seed(seed)
    y = torch.randint(0, m.num_classes, (batch,), generator=g)
    y = drop_labels(y, cfg.train.label_dropout, m.num_classes, g)
    return {"x0": torch.rand(batch, *m.input_shape, generator=g).to(device) * 2 - 1,
            "noise": torch.randn(batch, *m.input_shape, generator=g).to(device),
            "u": torch.randn(batch, generator=g).to(device),
            "y": y.to(device)}


def _call(c: Contestant, net: nn.Module, x, t, y, exits=None):
    if c.key == "peer":
        return net(x, t, y)
    return net(x, t, y, loops=c.loops, exits=exits)


def forward_step(c: Contestant, inputs: dict, amp, eager: bool = False) -> Callable[[], torch.Tensor]:
    """One sampling step at the model's full loop count, under no_grad."""
    net = c.module if eager else c.net

    def run():
        with torch.no_grad(), amp():
            return _call(c, net, inputs["x"], inputs["t"], inputs["y"])

    return run


class _ContestantLoss:
    """The family interface `compute_loss` needs, for a contestant on prepared flow inputs:
    forward -> [prediction per exit] (the peer has no loop argument), the objective's GT and Dist losses."""

    def __init__(self, c: Contestant, process):
        self.c, self.process = c, process

    def forward(self, net, b: dict, loops: int, exits) -> list[torch.Tensor]:
        if self.c.key == "peer":
            return [net(b["x_t"], b["t"], b["y"])]
        out = net(b["x_t"], b["t"], b["y"], loops=loops, exits=exits if len(exits) > 1 else None)
        return list(out) if len(exits) > 1 else [out]

    def gt_loss(self, pred: torch.Tensor, b: dict) -> torch.Tensor:
        return self.process.gt_loss(pred, b["target"], b["weight"])

    def dist_loss(self, student: torch.Tensor, teacher: torch.Tensor, b: dict) -> torch.Tensor:
        return self.process.dist_loss(student, teacher, b["weight"])


def train_step(c: Contestant, cfg: Config, inputs: dict, amp, eager: bool = False) -> Callable[..., torch.Tensor]:
    """One optimizer step: forward (+ ILSD exits), the trainer's loss (`elt.train.step.compute_loss` with the
    trainer's step plan), backward, grad clip, AdamW. The returned function draws the student's loops like
    the trainer; `run(l_int)` forces them."""
    net = c.module if eager else c.net
    process, t = build_objective(cfg.objective), cfg.train
    fam = _ContestantLoss(c, process)
    params = [p for p in c.module.parameters() if p.requires_grad]
    counter = itertools.count()

    def run(l_int: int | None = None):
        step = next(counter)
        x_t, tt, target, weight = process.training_inputs(inputs["x0"], inputs["noise"], inputs["u"])
        batch = {"x_t": x_t, "t": tt, "y": inputs["y"], "target": target, "weight": weight}
        mode = c.loss if c.loss in ("ilsd", "vanilla") else "vanilla"  # "gt": the ground-truth loss at c.loops
        plan = plan_step(dataclasses.replace(t, mode=mode, loops=c.loops or 1), step)
        if l_int and plan.l_int is not None:
            plan = dataclasses.replace(plan, exits=(l_int, plan.loops), l_int=l_int)
        loss, _ = compute_loss(fam, net, batch, plan, amp())
        c.opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        c.opt.step()
        return loss

    return run


def student_loop_counts(c: Contestant, cfg: Config) -> list[int | None]:
    """Every student exit an ILSD step can draw (each is a separate graph under torch.compile); [None] otherwise."""
    return list(range(cfg.train.min_loops, c.loops)) if c.loss == "ilsd" else [None]


def own_tensors(c: Contestant, inputs: dict, with_optimizer: bool) -> list[torch.Tensor]:
    """The tensors a workload keeps alive besides what it allocates: weights, buffers, inputs (+ AdamW state)."""
    out = list(c.module.parameters()) + list(c.module.buffers()) + list(inputs.values())
    if with_optimizer:
        out += [v for s in c.opt.state.values() for v in s.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
    return out
