"""Samplers for the flow family: Euler (rectified flow) and ancestral DDPM (x0 diffusion), with CFG.

The loop count is just a sampler argument: `loops` may be an int or a per-step sequence.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..objectives.flow import Diffusion, RectifiedFlow
from .common import guided_call, loop_schedule, to_uint8


def guided(model, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, loops: int, cfg: float) -> torch.Tensor:
    """One prediction with classifier-free guidance: u + cfg·(c - u); cfg = 1 is plain conditional."""
    return guided_call(model, (x, t), y, loops, cfg)


@torch.no_grad()
def euler_sample(model, process: RectifiedFlow, noise: torch.Tensor, y: torch.Tensor,
                 loops: int | Sequence[int], steps: int, cfg: float = 1.0) -> torch.Tensor:
    """Integrate dx/dt = v from t=1 (noise) to t=0 (data) in `steps` uniform Euler steps."""
    x = noise
    ts = torch.linspace(1.0, 0.0, steps + 1)
    for i, L in enumerate(loop_schedule(loops, steps)):
        t = torch.full((x.shape[0],), float(ts[i]), device=x.device)
        v = guided(model, x, t, y, L, cfg).float()
        x = x + (ts[i + 1] - ts[i]).item() * v
    return x


@torch.no_grad()
def ddpm_sample(model, process: Diffusion, noise: torch.Tensor, y: torch.Tensor,
                loops: int | Sequence[int], steps: int, cfg: float = 1.0,
                step_noise: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """Ancestral sampling of q(x_s | x_t, x̂0) on `steps` uniform t from 1 to 0; returns x̂0 at the end.

    `step_noise(i)` gives the fresh noise of step i (default: torch.randn from the global generator).
    """
    x = noise
    ts = torch.linspace(1.0, 0.0, steps + 1)
    for i, L in enumerate(loop_schedule(loops, steps)):
        t = torch.full((x.shape[0],), float(ts[i]), device=x.device)
        x0 = guided(model, x, t, y, L, cfg).float()
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
def sample_images(model, process, labels: torch.Tensor, loops: int | Sequence[int], steps: int,
                  cfg: float = 1.0, seed: int = 0, batch_size: int = 250, progress=None,
                  precision: str = "fp32") -> torch.Tensor:
    """Generate one image per label -> uint8 (N, H, W, C), the ADM `.npz` layout.

    `precision="bf16"` runs the network under bf16 autocast (the sampler state stays fp32).
    Noise for sample i depends only on (seed, i), so results do not depend on batch_size.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be 'bf16' or 'fp32', got {precision!r}")
    mc = model.cfg
    device = next(model.parameters()).device
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    g = torch.Generator().manual_seed(seed)
    noise_all = torch.randn(len(labels), mc.channels, mc.image_size, mc.image_size, generator=g)
    out = []
    for start in range(0, len(labels), batch_size):
        y = labels[start:start + batch_size].to(device)
        noise = noise_all[start:start + batch_size].to(device)
        with amp:
            x = _sample_batch(model, process, noise, y, loops, steps, cfg, seed, noise_all.shape,
                              slice(start, start + len(y)))
        out.append(to_uint8(x))
        if progress is not None:
            progress.update(len(y))
    return torch.cat(out)


def _sample_batch(model, process, noise, y, loops, steps, cfg, seed, full_shape, sl):
    if isinstance(process, Diffusion):
        def step_noise(i: int) -> torch.Tensor:
            g_i = torch.Generator().manual_seed(seed * 1_000_003 + i + 1)  # the same for every batch
            return torch.randn(full_shape, generator=g_i)[sl]
        return ddpm_sample(model, process, noise, y, loops, steps, cfg, step_noise)
    return euler_sample(model, process, noise, y, loops, steps, cfg)
