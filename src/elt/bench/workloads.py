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

from ..config import Config, ConfigError
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
    cfg: Config | None = None  # the contestant's own config (another config's model: --versus); None: the bench's
    latents: int | None = None  # forward at J latents per group (None: J_max, or no latent interface)
    latent_range: tuple[int, int] | None = None  # the training step's J̃ draw (None: no latent interface)
    full_latents: int | None = None  # the model's J_max (latent_teacher=full's teacher budget)

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


def _latent_label(cfg: Config, latents: int | None) -> str:
    return "" if cfg.j_max is None else f" J={latents or cfg.j_max}"


def _elt(cfg: Config, device: torch.device, key: str, label: str = "") -> Contestant:
    """The looped model of `cfg` at its full budget; its training step draws J̃ as the trainer does."""
    N, L = cfg.model.blocks, cfg.train.loops
    ecfg, notes = elt_config(cfg)
    mode = ecfg.train.mode
    torch.manual_seed(cfg.train.seed)
    step0 = plan_step(ecfg.train, 0, ecfg.latent_range, ecfg.j_max)  # the train FLOPs are those of step 0's draw
    train_arch = flow_arch(cfg.model, N, L, exits=2 if mode == "ilsd" else 1,  # ILSD: student + teacher heads
                           latents=step0.latents)
    return Contestant(key, f"ELT {N}x{L} ({mode}){_latent_label(cfg, None)}{label}", build_model(ecfg).to(device),
                      L, mode, flow_arch(cfg.model, N, L), train_arch, notes=notes, cfg=ecfg,
                      latent_range=ecfg.latent_range, full_latents=ecfg.j_max)


def at_latents(elt: Contestant, cfg: Config, latents: int) -> Contestant:
    """The ELT contestant at a smaller latent budget J (same module and optimizer): forward at J, training
    steps at J̃ = J (the student's loops are still drawn)."""
    N, L = cfg.model.blocks, cfg.train.loops
    exits = 2 if elt.loss == "ilsd" else 1
    return dataclasses.replace(elt, key=f"elt_j{latents}", label=f"ELT {N}x{L} ({elt.loss}) J={latents}",
                               fwd_arch=flow_arch(cfg.model, N, L, latents=latents),
                               train_arch=flow_arch(cfg.model, N, L, exits=exits, latents=latents), net=None,
                               latents=latents, latent_range=(latents, latents), notes=[])


def check_latent_budgets(cfg: Config, latents: list[int] | None, flag: str = "--latents") -> list[int]:
    """The latent budgets asked for, each in 1..J_max, on a config with a latent interface (ConfigError)."""
    if not latents:
        return []
    if cfg.j_max is None:
        raise ConfigError(f"{flag} {' '.join(map(str, latents))} measures the model at other latent budgets, but "
                          f"the config has no latent interface: add a model.latent section or drop {flag}")
    bad = [j for j in latents if not 1 <= j <= cfg.j_max]
    if bad:
        raise ConfigError(f"{flag} values must be in 1..{cfg.j_max} (the model's latents per group), got {bad}")
    return list(dict.fromkeys(latents))


def build_contestants(cfg: Config, device: torch.device, peer: bool = True, latents: list[int] | None = None,
                      versus: Config | None = None, versus_name: str = "versus"
                      ) -> tuple[list[Contestant], str | None]:
    """ELT (N×L; with a latent interface at J_max, and at each smaller budget of `latents`), the ELT model of
    another config (`versus`, e.g. the same model without a latent interface), the iso-compute baseline
    (N·L×1) and, if diffusers imports, the DiT peer (N·L layers). -> (contestants, why the peer was skipped)."""
    from .peer import PeerUnavailable, build_peer

    N, L = cfg.model.blocks, cfg.train.loops
    elt = _elt(cfg, device, "elt")
    out = [elt] + [at_latents(elt, cfg, j) for j in check_latent_budgets(cfg, latents) if j != cfg.j_max]
    if versus is not None:
        if versus.model.input_shape != cfg.model.input_shape or versus.model.num_classes != cfg.model.num_classes:
            raise ConfigError(f"--versus {versus_name}: its model takes inputs {versus.model.input_shape} with "
                              f"{versus.model.num_classes} classes, the benched config's {cfg.model.input_shape} "
                              f"with {cfg.model.num_classes}: compare configs on the same data")
        out.append(_elt(versus, device, "versus", f" [{versus_name}]"))
    bcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mode="baseline"))
    torch.manual_seed(cfg.train.seed)
    base_arch = flow_arch(cfg.model, N * L, 1)
    base = Contestant("baseline", f"baseline {N * L}x1{_latent_label(cfg, None)}", build_model(bcfg).to(device), 1,
                      "gt", base_arch, base_arch, latent_range=cfg.latent_range, full_latents=cfg.j_max)
    if cfg.latent_range is not None:  # its training step draws J̃ too: the FLOPs of step 0's draw
        base.train_arch = flow_arch(cfg.model, N * L, 1, latents=plan_step(bcfg.train, 0, cfg.latent_range).latents)
    out, skipped = [*out, base], None
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
        t = (c.cfg or cfg).train
        if c.opt is None:  # the contestants at other latent budgets share the ELT model's
            c.opt = torch.optim.AdamW(c.module.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
            for other in out:
                if other.module is c.module:
                    other.opt = c.opt
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
    budget = {} if c.latents is None else {"latents": c.latents}
    return net(x, t, y, loops=c.loops, exits=exits, **budget)


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

    def forward(self, net, b: dict, loops: int, exits, latents: int | None = None) -> list[torch.Tensor]:
        if self.c.key == "peer":
            return [net(b["x_t"], b["t"], b["y"])]
        budget = {} if latents is None else {"latents": latents}
        out = net(b["x_t"], b["t"], b["y"], loops=loops, exits=exits if len(exits) > 1 else None, **budget)
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
    cfg = c.cfg or cfg
    process, t = build_objective(cfg.objective), cfg.train
    fam = _ContestantLoss(c, process)
    params = [p for p in c.module.parameters() if p.requires_grad]
    counter = itertools.count()

    def run(l_int: int | None = None):
        step = next(counter)
        x_t, tt, target, weight = process.training_inputs(inputs["x0"], inputs["noise"], inputs["u"])
        batch = {"x_t": x_t, "t": tt, "y": inputs["y"], "target": target, "weight": weight}
        mode = c.loss if c.loss in ("ilsd", "vanilla") else "vanilla"  # "gt": the ground-truth loss at c.loops
        plan = plan_step(dataclasses.replace(t, mode=mode, loops=c.loops or 1), step, c.latent_range, c.full_latents)
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
    return list(range((c.cfg or cfg).train.min_loops, c.loops)) if c.loss == "ilsd" else [None]


def own_tensors(c: Contestant, inputs: dict, with_optimizer: bool) -> list[torch.Tensor]:
    """The tensors a workload keeps alive besides what it allocates: weights, buffers, inputs (+ AdamW state)."""
    out = list(c.module.parameters()) + list(c.module.buffers()) + list(inputs.values())
    if with_optimizer:
        out += [v for s in c.opt.state.values() for v in s.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
    return out
