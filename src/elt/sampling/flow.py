"""Samplers for the flow family: Euler (rectified flow) and ancestral DDPM (x0 diffusion), with CFG.

The solvers (`euler_solve`, `ddpm_solve`) take a denoiser `fn(x, t, y, step)` and a `BudgetSchedule`, so the
compute of each step (loops, a cheaper unconditional branch, later latents) never reaches their code.
`euler_sample` / `ddpm_sample` / `sample_images` are the same on a network with a loop count (an int or one
per step) and a guidance scale.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..budget import Budget, BudgetSchedule
from ..objectives.flow import Diffusion, RectifiedFlow
from ..precision import autocast, check_precision
from ..rng import SAMPLE_STREAMS, generator, sample_seed
from .adaptive import halting_step_fn
from .common import guided_call, guided_fn, network_fn, to_uint8

Denoiser = Callable[..., torch.Tensor]  # fn(x (B, *S), t (B,), y (B,), step: StepBudget) -> (B, *S)
LoopSpec = int | Budget | Sequence[int | Budget] | BudgetSchedule


def guided(model, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, loops: int | Budget, cfg: float,
           uncond: int | Budget | None = None) -> torch.Tensor:
    """One prediction with classifier-free guidance: u + cfg·(c - u); cfg = 1 is plain conditional.
    `uncond`: the unconditional branch's loop count or budget (None: as the conditional one)."""
    return guided_call(network_fn(model), (x, t), y, Budget.of(loops),
                       None if uncond is None else Budget.of(uncond), cfg, null_label=model.null_label)


@torch.no_grad()
def euler_solve(denoise: Denoiser, noise: torch.Tensor, y: torch.Tensor, schedule: BudgetSchedule) -> torch.Tensor:
    """Integrate dx/dt = v from t=1 (noise) to t=0 (data) in len(schedule) uniform Euler steps."""
    x = noise
    ts = torch.linspace(1.0, 0.0, len(schedule) + 1)
    for i, step in enumerate(schedule):
        t = torch.full((x.shape[0],), float(ts[i]), device=x.device)
        v = denoise(x, t, y, step).float()
        x = x + (ts[i + 1] - ts[i]).item() * v
    return x


@torch.no_grad()
def ddpm_solve(denoise: Denoiser, process: Diffusion, noise: torch.Tensor, y: torch.Tensor,
               schedule: BudgetSchedule, step_noise: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """Ancestral sampling of q(x_s | x_t, x̂0) on len(schedule) uniform t from 1 to 0; returns x̂0 at the end.

    `step_noise(i)` gives the fresh noise of step i (default: torch.randn from the global generator).
    """
    x, steps = noise, len(schedule)
    ts = torch.linspace(1.0, 0.0, steps + 1)
    for i, step in enumerate(schedule):
        t = torch.full((x.shape[0],), float(ts[i]), device=x.device)
        x0 = denoise(x, t, y, step).float()
        if process.cfg.clip_x0:
            x0 = x0.clamp(-1, 1)
        if i == steps - 1:
            return x0
        lam_t, lam_s = process.logsnr(ts[i:i + 1]), process.logsnr(ts[i + 1:i + 2])
        a_t, s_t = process.alpha_sigma(lam_t)
        a_s, s_s = process.alpha_sigma(lam_s)
        a_ts = a_t / a_s
        var_ts = s_t**2 - a_ts**2 * s_s**2
        mean = (a_ts * s_s**2 / s_t**2).item() * x + (a_s * var_ts / s_t**2).item() * x0
        std = (var_ts * s_s**2 / s_t**2).sqrt().item()
        eps = (step_noise(i) if step_noise is not None else torch.randn(x.shape)).to(x.device)
        x = mean + std * eps
    return x


@torch.no_grad()
def euler_sample(model, process: RectifiedFlow, noise: torch.Tensor, y: torch.Tensor, loops: LoopSpec,
                 steps: int, cfg: float = 1.0, uncond: LoopSpec | None = None) -> torch.Tensor:
    """`euler_solve` on a network: `loops` per step (int or one per step), guidance `cfg`."""
    return euler_solve(guided_fn(model, cfg), noise, y, BudgetSchedule.of(loops, steps, uncond))


@torch.no_grad()
def ddpm_sample(model, process: Diffusion, noise: torch.Tensor, y: torch.Tensor, loops: LoopSpec, steps: int,
                cfg: float = 1.0, step_noise: Callable[[int], torch.Tensor] | None = None,
                uncond: LoopSpec | None = None) -> torch.Tensor:
    """`ddpm_solve` on a network: `loops` per step (int or one per step), guidance `cfg`."""
    return ddpm_solve(guided_fn(model, cfg), process, noise, y, BudgetSchedule.of(loops, steps, uncond), step_noise)


def sample_noise(seed: int, indices: range, k: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Stream k of samples `indices` (k = 0: starting noise, i + 1: DDPM step i) -> (len(indices), *shape)."""
    return torch.stack([torch.randn(shape, generator=generator(sample_seed(seed, i, k))) for i in indices])


@torch.no_grad()
def sample_images(model, process, labels: torch.Tensor, loops: LoopSpec, steps: int, cfg: float = 1.0,
                  seed: int = 0, batch_size: int = 250, progress=None, precision: str = "fp32",
                  uncond: LoopSpec | None = None, first_index: int = 0,
                  to_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None, halt=None,
                  trace: list | None = None) -> torch.Tensor:
    """Generate one sample per label -> uint8 (N, H, W, C), the ADM `.npz` layout (for images); `to_pixels`
    maps the model's outputs to images in [-1, 1] first (a VAE decoder for latent models).

    `halt` (a sampling.adaptive.HaltRule): every sample picks its own loop count at every step (then `loops`
    is ignored); `trace`, a list, receives the loops each sample used, one (steps, b) tensor per batch.

    `loops`: an int, a Budget, one per step, or a BudgetSchedule; `uncond` the unconditional branch's budget
    (None: as the conditional one; a different one costs a second network call per step).
    `precision="bf16"` runs the network under bf16 autocast (the sampler state stays fp32).
    labels[j] is sample number first_index + j: its noise (the start, and each DDPM step's) comes from its own
    streams of (seed, first_index + j), so results depend neither on batch_size nor on how a set is split.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if isinstance(process, Diffusion) and steps >= SAMPLE_STREAMS:
        raise ValueError(f"the DDPM sampler takes at most {SAMPLE_STREAMS - 1} steps (one noise stream each per "
                         f"sample), got {steps}")
    check_precision("precision", precision)
    schedule = BudgetSchedule.of(loops if halt is None else halt.cap, steps, uncond)
    if halt is not None and uncond is not None:
        raise ValueError("--halt decides the loops of both guidance rows together: it does not combine with a "
                         "separate --uncond-loops / --uncond-latents budget")
    denoise = guided_fn(model, cfg)
    device = next(model.parameters()).device
    shape = tuple(model.sample_shape)  # (C, *spatial)
    out = []
    for start in range(0, len(labels), batch_size):
        y = labels[start:start + batch_size].to(device)
        rows = range(first_index + start, first_index + start + len(y))
        noise = sample_noise(seed, rows, 0, shape).to(device)
        if halt is not None:
            used = []
            denoise = halting_step_fn(model, halt, cfg, used, rows, x0_coefficients(process, steps))
        with autocast(device, precision):
            x = _sample_batch(denoise, process, noise, y, schedule, seed, rows, shape)
        if halt is not None and trace is not None:
            trace.append(torch.stack(used))  # (steps, b)
        out.append(to_uint8(x if to_pixels is None else to_pixels(x)))
        if progress is not None:
            progress.update(len(y))
    return torch.cat(out)


def _sample_batch(denoise, process, noise, y, schedule, seed, rows, shape):
    if isinstance(process, Diffusion):
        def step_noise(i: int) -> torch.Tensor:
            return sample_noise(seed, rows, i + 1, shape)
        return ddpm_solve(denoise, process, noise, y, schedule, step_noise)
    return euler_solve(denoise, noise, y, schedule)


def x0_coefficients(process, steps: int) -> list[float]:
    """Per step, how much the next sampler state moves per unit change of the prediction: Euler |Δt|; DDPM the
    x̂0 coefficient a_s·var_ts/s_t² of the posterior mean (1 at the last step, which returns x̂0 itself)."""
    if not isinstance(process, Diffusion):
        return [1.0 / steps] * steps
    ts, out = torch.linspace(1.0, 0.0, steps + 1), []
    for i in range(steps):
        if i == steps - 1:
            out.append(1.0)
            continue
        (a_t, s_t), (a_s, s_s) = (process.alpha_sigma(process.logsnr(ts[j:j + 1])) for j in (i, i + 1))
        var_ts = s_t**2 - (a_t / a_s)**2 * s_s**2
        out.append(float(a_s * var_ts / s_t**2))
    return out
