"""MaskGIT iterative parallel decoding for the masked family, with classifier-free guidance.

Start from all-[MASK]; at step k of K: predict every position, sample the masked ones at temperature
τ_k = bias + scale·(1 − (k+1)/K), rank the new tokens by confidence log p + annealed Gumbel noise, and
re-mask the least confident so that ⌊T·γ((k+1)/K)⌋ stay masked (γ: the mask schedule). Every step fixes at
least one token and step K fixes the rest, so exactly K steps decode all T tokens. `loops` may differ per step.

`decode_tokens` takes a logits callable `fn(tokens, y, step)` and a `BudgetSchedule`; `maskgit_decode` is the
same on a network with a loop count (an int or one per step).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..budget import Budget, BudgetSchedule
from ..objectives.masked import mask_ratio
from ..precision import autocast, check_precision
from ..rng import generator, sample_seed
from .adaptive import halting_step_fn
from .common import guided_call, guided_fn, network_fn, to_uint8

LogitsFn = Callable[..., torch.Tensor]  # fn(tokens (B, T), y (B,), step: StepBudget) -> fp32 logits (B, T, V)
LoopSpec = int | Budget | Sequence[int | Budget] | BudgetSchedule


@dataclass
class DecodeSettings:
    steps: int = 12  # K
    cfg: float = 1.0  # guidance scale on the logits; 1 = off
    temp_bias: float = 0.5  # sampling temperature τ_k = temp_bias + temp_scale·(1 − (k+1)/K)
    temp_scale: float = 0.8
    choice_temperature: float = 4.5  # Gumbel noise on the confidence, annealed by (1 − (k+1)/K)
    schedule: str = "cosine"

    def validate(self, tokens: int) -> None:
        if not 1 <= self.steps <= tokens:
            raise ValueError(f"decoding needs 1 <= steps <= {tokens} (tokens per image), got steps={self.steps}")
        if self.temp_bias + self.temp_scale * (1 - 1 / self.steps) <= 0 or self.temp_bias <= 0:
            raise ValueError(f"sampling temperatures must stay > 0: temp_bias={self.temp_bias}, "
                             f"temp_scale={self.temp_scale}")
        if self.choice_temperature < 0:
            raise ValueError(f"choice_temperature must be >= 0, got {self.choice_temperature}")


def guided_logits(model, tokens: torch.Tensor, y: torch.Tensor, loops: int | Budget, cfg: float,
                  uncond: int | Budget | None = None) -> torch.Tensor:
    """fp32 logits (B, T, V) with classifier-free guidance u + cfg·(c − u); cfg = 1 is plain conditional.
    `uncond`: the unconditional branch's loop count or budget (None: as the conditional one)."""
    return guided_call(network_fn(model), (tokens,), y, Budget.of(loops),
                       None if uncond is None else Budget.of(uncond), cfg, null_label=model.null_label, upcast=True)


def remask_counts(tokens: int, steps: int, schedule: str = "cosine") -> list[int]:
    """Tokens still masked after each step k = 0 … K−1: strictly decreasing, ending at 0."""
    left, out = tokens, []
    for k in range(steps):
        n = int(torch.floor(mask_ratio((k + 1) / steps, schedule) * tokens)) if k < steps - 1 else 0
        n = min(n, left - 1) if k < steps - 1 else 0  # unmask at least one token per step
        n = max(n, steps - 1 - k)  # ... but keep one per remaining step, so no step is left without work
        out.append(n)
        left = n
    return out


def _gumbel(u: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))


class NoiseSource:
    """Uniform draws for decoding step k of the samples `rows`: sample i's noise depends only on
    (seed, i, k), so results do not depend on the batch size."""

    def __init__(self, seed: int, rows: range, tokens: int, vocab: int):
        self.seed, self.rows, self.tokens, self.vocab = seed, rows, tokens, vocab

    def draw(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> uniforms (B, T, V) for token sampling, uniforms (B, T) for the confidence noise."""
        tok, choice = [], []
        for i in self.rows:
            g = generator(sample_seed(self.seed, i, k))
            tok.append(torch.rand(self.tokens, self.vocab, generator=g))
            choice.append(torch.rand(self.tokens, generator=g))
        return torch.stack(tok), torch.stack(choice)


@torch.no_grad()
def decode_tokens(logits_fn: LogitsFn, y: torch.Tensor, schedule: BudgetSchedule, settings: DecodeSettings,
                  noise: NoiseSource, tokens: int, mask_id: int, trace: list | None = None) -> torch.Tensor:
    """Decode one batch: y (B,) labels -> tokens (B, T) int64 in [0, V), T = `tokens`, in len(schedule) =
    settings.steps steps. `noise` gives the random draws. `trace`, if given, receives one dict per step (step,
    loops, temperature, choice_scale, masked_after); it only observes: the tokens are the same without it."""
    T, K = tokens, settings.steps
    settings.validate(T)
    if len(schedule) != K:
        raise ValueError(f"a budget schedule for {K} decoding steps has {len(schedule)} entries")
    tokens = torch.full((len(y), T), mask_id, dtype=torch.long, device=y.device)
    counts = remask_counts(T, K, settings.schedule)
    for k, step in enumerate(schedule):
        unknown = tokens == mask_id  # (B, T)
        logits = logits_fn(tokens, y, step)  # (B, T, V)
        temp = settings.temp_bias + settings.temp_scale * (1 - (k + 1) / K)
        g_tok, u_choice = noise.draw(k)  # (B, T, V) uniforms, (B, T) uniforms
        sampled = (logits / temp + _gumbel(g_tok.to(logits.device))).argmax(-1)  # Gumbel-max = categorical
        sampled = torch.where(unknown, sampled, tokens)
        anneal = settings.choice_temperature * (1 - (k + 1) / K)
        if trace is not None:
            trace.append({"step": k, "loops": step.cond.loops, "temperature": temp, "choice_scale": anneal,
                          "masked_after": counts[k]})
        if counts[k] == 0:
            return sampled
        log_p = logits.log_softmax(-1).gather(-1, sampled[..., None])[..., 0]  # (B, T)
        confidence = log_p + anneal * _gumbel(u_choice.to(logits.device))
        confidence = confidence.masked_fill(~unknown, float("inf"))  # decided tokens are never re-masked
        remask = confidence.topk(counts[k], dim=1, largest=False).indices  # (B, n) least confident
        tokens = sampled.scatter(1, remask, mask_id)
    return tokens


@torch.no_grad()
def maskgit_decode(model, y: torch.Tensor, loops: LoopSpec, settings: DecodeSettings, noise: NoiseSource,
                   trace: list | None = None, uncond: LoopSpec | None = None) -> torch.Tensor:
    """`decode_tokens` on a network: `loops` per step (int or one per step), guidance settings.cfg."""
    settings.validate(model.cfg.tokens)
    schedule = BudgetSchedule.of(loops, settings.steps, uncond)
    return decode_tokens(guided_fn(model, settings.cfg, upcast=True), y, schedule, settings, noise,
                         model.cfg.tokens, model.mask_id, trace)


@torch.no_grad()
def sample_tokens(model, labels: torch.Tensor, loops: LoopSpec, settings: DecodeSettings, seed: int = 0,
                  batch_size: int = 250, progress=None, precision: str = "fp32",
                  uncond: LoopSpec | None = None, first_index: int = 0, halt=None,
                  trace: list | None = None) -> torch.Tensor:
    """Decode one token grid per label -> int64 (N, *model.sample_shape); label j is sample first_index + j.
    `halt` (sampling.adaptive.HaltRule or ForcedExits): every sample picks its loops at every decoding step;
    `trace` then receives the loops used, one (steps, b) tensor per batch."""
    if halt is not None and uncond is not None:
        raise ValueError("--halt decides the loops of both guidance rows together: it does not combine with a "
                         "separate --uncond-loops budget")
    check_precision("precision", precision)
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(labels), batch_size):
        y = labels[start:start + batch_size].to(device)
        rows = range(first_index + start, first_index + start + len(y))
        noise = NoiseSource(seed, rows, model.cfg.tokens, model.cfg.codebook_size)
        with autocast(device, precision):
            if halt is None:
                toks = maskgit_decode(model, y, loops, settings, noise, uncond=uncond)
            else:
                used = []
                settings.validate(model.cfg.tokens)
                toks = decode_tokens(halting_step_fn(model, halt, settings.cfg, used, rows), y,
                                     BudgetSchedule.of(halt.cap, settings.steps), settings, noise, model.cfg.tokens,
                                     model.mask_id)
                if trace is not None:
                    trace.append(torch.stack(used))  # (steps, b)
        out.append(toks.view(-1, *model.sample_shape).cpu())
        if progress is not None:
            progress.update(len(y))
    return torch.cat(out)


@torch.no_grad()
def sample_images(model, tokenizer, labels: torch.Tensor, loops: LoopSpec, settings: DecodeSettings,
                  seed: int = 0, batch_size: int = 250, progress=None, precision: str = "fp32",
                  uncond: LoopSpec | None = None, first_index: int = 0, halt=None,
                  trace: list | None = None) -> torch.Tensor:
    """Decode tokens and map them to pixels with the tokenizer -> uint8 (N, H, W, C)."""
    tokens = sample_tokens(model, labels, loops, settings, seed, batch_size, progress, precision, uncond,
                           first_index, halt, trace)
    return torch.cat([to_uint8(tokenizer.decode(tokens[i:i + 500])) for i in range(0, len(tokens), 500)])
