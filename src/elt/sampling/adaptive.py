"""Per-sample adaptive loop counts (zero-shot: ILSD already trains every loop's exit), both families.

At each sampling step the core runs loop by loop; after loop ℓ ≥ 2 a halting rule compares the guided prediction
(or the core state) with the one of loop ℓ − 1, per sample, and a sample whose change is below τ leaves the
batch: its prediction is kept and the remaining loops run on the other samples only (compaction, so compute
really falls). With classifier-free guidance the conditional and unconditional rows of a sample decide and
exit together, on the guided prediction. Attention never mixes samples, so a sample's result does not depend
on the batch it shares: it equals a fixed-L call at the loops it used.

Rules (`elt sample --halt RULE:τ --halt-cap L`):
- `sampler:τ`: how far one more loop would move the sampler's next state, in pixel units of the [-1, 1] scale:
  coef_k · RMS(ŷ_ℓ − ŷ_{ℓ−1}) with coef_k = |Δt_k| for Euler and the x̂0 coefficient of the posterior mean for
  DDPM, so one τ means the same at every step (τ = 2/255: less than one grey level).
- `latent:τ`: Huginn's relative latent change, mean over positions of ‖h_ℓ − h_{ℓ−1}‖ / ‖h_ℓ‖ (the larger of
  the two rows under guidance).
- `kl:τ` (masked family): Huginn's KL(p_ℓ ‖ p_{ℓ−1}) of the guided token distributions, mean over the positions
  still masked at this decoding step (e.g. 0.03: 3.1 mean loops of 4 on the MNIST masked model).
τ = 0 never exits early (every sample runs the cap); τ = inf exits at loop 2, the first loop that can be judged.
A model with a latent interface (ELIT) loops on its latents at the full budget J_max; judging a loop there
also runs Write and the tail blocks (counted in `halted_gflops`), and `latent:τ` reads the latents.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError

RULES = ("sampler", "latent", "kl")
FAMILY_RULES = {"flow": ("sampler", "latent"), "masked": ("kl", "latent")}


@dataclass(frozen=True)
class HaltRule:
    """A halting rule: `kind` (one of RULES), threshold `tau` >= 0, at most `cap` loops per call."""

    kind: str
    tau: float
    cap: int

    @classmethod
    def parse(cls, text: str, cap: int) -> "HaltRule":
        """'sampler:0.008' (and the loop cap) -> HaltRule; ConfigError saying what to write otherwise."""
        kind, sep, value = str(text).partition(":")
        try:
            tau = float(value)
        except ValueError:
            tau = None
        if kind not in RULES or not sep or tau is None or math.isnan(tau) or tau < 0:
            raise ConfigError(f"--halt {text!r}: write RULE:τ with RULE one of {', '.join(RULES)} and τ a number "
                              f">= 0, e.g. --halt sampler:0.008 (flow, pixel units), --halt kl:0.03 (masked) or "
                              f"--halt latent:0.2")
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ConfigError(f"--halt-cap must be an integer loop count >= 1, got {cap!r}")
        return cls(kind, tau, cap)

    def __str__(self) -> str:
        return f"{self.kind}:{self.tau:g} (cap {self.cap})"


def _rms(a: torch.Tensor) -> torch.Tensor:
    """(n, ...) -> (n,) root mean square over everything but the first axis."""
    return a.float().flatten(1).pow(2).mean(1).sqrt()


def _latent_change(h: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """(R, T, D) states -> (R,) mean over positions of ‖h − prev‖ / ‖h‖."""
    h, prev = h.float(), prev.float()
    return ((h - prev).norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-12)).mean(1)


@dataclass(frozen=True)
class ForcedExits:
    """Not a rule: given exits, `loops` (steps, N) of sample indices 0..N-1 (the shuffled-exit control of the
    adaptive-exit evaluation: another sample's exits, so the loops carry no information about this one)."""

    loops: torch.Tensor
    cap: int

    @property
    def kind(self) -> str:
        return "forced"


@dataclass(frozen=True)
class GapProbe:
    """Not a rule: every sample runs `cap` loops (the fixed-cap trajectory) while the rule `measure` is read at
    every loop; `records` receives per call (step k, values (b, cap-2), gaps (b, cap-2)) for the loops
    l = 2 .. cap-1 where the rule could stop: value = the rule's change from loop l-1 to l, gap = the same
    measure between loop l and the cap (what stopping at l would really lose)."""

    measure: str  # the rule kind read: sampler | latent | kl
    cap: int
    records: list = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "probe"


def _change(kind: str, pred, prev_pred, h, prev_h, masked, coef: float, guided: bool) -> torch.Tensor:
    """(n,) the rule `kind`'s measure of the change from (prev_pred, prev_h) to (pred, h): predictions (n, ...),
    core states (R, T, D) with R = 2n under guidance, `masked` (n, T) the positions still to decide."""
    if kind == "sampler":
        return coef * _rms(pred - prev_pred)
    if kind == "kl":
        return _masked_kl(pred, prev_pred, masked)
    change = _latent_change(h, prev_h)
    return torch.maximum(*change.chunk(2)) if guided else change


@torch.no_grad()
def adaptive_predict(model, inputs: tuple[torch.Tensor, ...], y: torch.Tensor, rule: HaltRule, cfg: float,
                     coef: float = 1.0, exits: torch.Tensor | None = None, step: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided prediction of a plain model, each sample at its own loop count -> (prediction (B, ...),
    loops used (B,) int64). `inputs`: the flow family's (x, t) or the masked family's (tokens,), batched with y
    (B,). `coef`: the step's factor from prediction change to sampler state change (the `sampler` rule).
    `exits` (B,): run each sample to exactly these loops instead (a ForcedExits rule). `step`: the sampling step,
    for a GapProbe's records."""
    path = getattr(model, "latent", None)  # ELIT: the core loops on latents between a head and a tail
    b = y.shape[0]
    device = y.device
    probe = rule if rule.kind == "probe" else None  # GapProbe: run the cap, read the rule at every loop
    measure = probe.measure if probe else rule.kind
    masked = (inputs[0] == model.mask_id) if measure == "kl" else None  # (B, T) positions still to decide
    guided = cfg != 1.0
    if guided:
        inputs = tuple(torch.cat([a, a]) for a in inputs)
        y = torch.cat([y, torch.full_like(y, model.null_label)])
    h, c = model.embed(*inputs, y)
    if path is not None:  # at the full latent budget: kept (R, N, D) head output, h (R, G·J, D) latents
        kept, h = path.enter(h, c, path.check_latents(None))
        tail = path.tail_mods(c)
    mods = model.core.modulations(c)
    out = None
    used = torch.zeros(b, dtype=torch.long)
    active = torch.arange(b, device=device)  # the samples still looping
    prev_pred = prev_h = None
    seen = []  # with a probe: (pred, h, value) of every loop
    for loop in range(1, rule.cap + 1):
        h = model.core.loop_once(h, mods)
        state = h if path is None else path.leave(kept, h, tail)  # (R, T, D) tokens for the output layer
        rows = model.readout(state, c).float()  # (R, ...): R = 2n with guidance (cond rows, then uncond rows)
        if guided:
            cond, uncond = rows.chunk(2)
            pred = uncond + cfg * (cond - uncond)  # (n, ...): what the sampler will use
        else:
            pred = rows
        if out is None:
            out = pred.new_empty(b, *pred.shape[1:])
        if probe is not None:
            value = None if loop < 2 else _change(measure, pred, prev_pred, h, prev_h, masked, coef, guided)
            seen.append((pred, h, value))
        if exits is not None:
            done = exits.to(device)[active] <= loop
        elif loop == rule.cap:
            done = torch.ones(len(active), dtype=torch.bool, device=device)
        elif loop < 2 or probe is not None:
            done = torch.zeros(len(active), dtype=torch.bool, device=device)
        else:
            done = _change(measure, pred, prev_pred, h, prev_h, None if masked is None else masked[active], coef,
                           guided) < rule.tau
        out[active[done]] = pred[done]
        used[active[done].cpu()] = loop
        keep = ~done
        if not keep.any():
            break
        rows_kept = torch.cat([keep, keep]) if guided else keep
        h, c = h[rows_kept], c[rows_kept]
        mods = [tuple(m[rows_kept] for m in mod) for mod in mods]
        if path is not None:
            kept, tail = kept[rows_kept], [tuple(m[rows_kept] for m in mod) for mod in tail]
        prev_pred, prev_h, active = pred[keep], h, active[keep]
    if probe is not None and rule.cap > 2:
        last_pred, last_h, _ = seen[-1]
        values = torch.stack([v for _, _, v in seen[1:-1]], 1)  # (b, cap-2): loops 2 .. cap-1
        gaps = torch.stack([_change(measure, last_pred, p, last_h, hl, masked, coef, guided)
                            for p, hl, _ in seen[1:-1]], 1)
        probe.records.append((step, values.cpu(), gaps.cpu()))
    return out, used


def halting_step_fn(model, halt, cfg: float, used: list, rows: range, coefs: list[float] | None = None):
    """A sampler's network function fn(*inputs, y, step) whose k-th call (sampling or decoding step k) halts
    per sample with `halt` (a ForcedExits: exits where it says for the batch's samples `rows`); the loops used
    go to `used`, one (b,) tensor per call. `coefs`: the `sampler` rule's factor per step (None: 1)."""
    def fn(*args):
        *inputs, y, _ = args
        k = len(used)
        exits = halt.loops[k, rows.start:rows.stop] if halt.kind == "forced" else None
        pred, loops = adaptive_predict(model, tuple(inputs), y, halt, cfg, 1.0 if coefs is None else coefs[k], exits,
                                       k)
        used.append(loops)
        return pred
    return fn


def _masked_kl(logits: torch.Tensor, prev: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """(n, T, V) logits of two successive loops, (n, T) positions still masked -> (n,) mean over those positions
    of KL(p_ℓ ‖ p_ℓ−1) (Huginn's rule; 0 for a sample with nothing masked)."""
    log_p, log_q = logits.log_softmax(-1), prev.log_softmax(-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # (n, T)
    return (kl * masked).sum(1) / masked.sum(1).clamp_min(1)


@torch.no_grad()
def halted_gflops(model, loops: torch.Tensor, guided: bool) -> float:
    """Counted GFLOPs per sample of a halted sampling run, `loops` (steps, N) the loops each sample used per
    step: per call a forward at its loop count plus the readouts that judged the earlier loops (with a latent
    interface: Write, the tail blocks and the output layer), x2 with guidance (both rows loop alike)."""
    from ..anytime import forward_flops
    from ..bench.flops import count_flops

    device = next(model.parameters()).device
    h, c = model.embed(*(a.to(device) for a in model.example_inputs(1)))
    path = getattr(model, "latent", None)
    if path is None:
        readout = count_flops(lambda: model.readout(h, c))[0]
    else:  # judging a loop of an ELIT model also runs Write and the tail blocks
        kept, lat = path.enter(h, c, path.check_latents(None))
        tail = path.tail_mods(c)
        readout = count_flops(lambda: model.readout(path.leave(kept, lat, tail), c))[0]
    per_loop = {int(L): forward_flops(model, int(L)) for L in torch.unique(loops)}
    total = sum(per_loop[int(L)] * int(n) for L, n in zip(*torch.unique(loops, return_counts=True)))
    total += readout * int((loops - 1).clamp_min(0).sum())
    return total * (2 if guided else 1) / loops.shape[1] / 1e9
