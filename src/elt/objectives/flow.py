"""Training processes for the flow family: rectified flow (default) and the paper's x0-diffusion.

Both map clean samples x0 (B, C, *spatial) in [-1, 1] to (x_t, t, target, weight) and define the ground-truth
and distillation losses the ILSD combiner uses. Samplers live in `elt.sampling.flow`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class ObjectiveConfig:
    kind: str = "rectified_flow"  # "rectified_flow" (v target) or "diffusion" (x0 target, DDPM)
    t_mean: float = 0.0  # logit-normal t for rectified flow: t = sigmoid(N(t_mean, t_std))
    t_std: float = 1.0
    # diffusion: shifted cosine, logSNR(t) = -2 log tan(pi t / 2) + 2 log(shift). 1 = the plain cosine schedule
    # (simple diffusion's reference resolution 64); its rule for d×d inputs is shift = 64/d (noisier for large d)
    schedule_shift: float = 1.0
    # diffusion: Kingma & Gao's sigmoid weighting w(λ) = sigmoid(bias - λ) on the ε-loss. 0 centres the turn-over
    # at SNR = 1: noisier levels get full weight, cleaner ones decay as e^(bias - λ)
    sigmoid_bias: float = 0.0
    clip_x0: bool = True  # diffusion sampler: clip predicted x0 to [-1, 1]

    def validate(self) -> None:
        if self.kind not in ("rectified_flow", "diffusion"):
            raise ValueError(f"objective.kind must be 'rectified_flow' or 'diffusion', got {self.kind!r}")
        for key in ("t_mean", "t_std", "schedule_shift", "sigmoid_bias"):
            if not math.isfinite(getattr(self, key)):
                raise ValueError(f"objective.{key} must be a finite number, got {getattr(self, key)}")
        if self.t_std <= 0:
            raise ValueError(f"objective.t_std must be > 0, got {self.t_std}")
        if self.schedule_shift <= 0:
            raise ValueError(f"objective.schedule_shift must be > 0, got {self.schedule_shift}")


def expand_like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample values (B,) -> (B, 1, …, 1) with x's number of dimensions, to broadcast over x."""
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # (B, C, *spatial) x2 -> (B,) mean over values, in fp32
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


class _Process:
    """Shared ground-truth and distillation losses (per-sample weighted MSE, averaged over the batch)."""

    def gt_loss(self, pred, target, weight) -> torch.Tensor:
        return (weight * _mse(pred, target)).mean()

    def dist_loss(self, student, teacher, weight) -> torch.Tensor:
        return (weight * _mse(student, teacher.detach())).mean()


class RectifiedFlow(_Process):
    """x_t = (1 - t)·x0 + t·ε, t=0 data, t=1 noise; the model predicts v = ε - x0."""

    def __init__(self, cfg: ObjectiveConfig):
        self.cfg = cfg

    def training_inputs(self, x0: torch.Tensor, noise: torch.Tensor, u: torch.Tensor):
        """u: (B,) standard normal draws (the step's randomness) -> (x_t, t, target, weight)."""
        t = torch.sigmoid(self.cfg.t_mean + self.cfg.t_std * u)  # logit-normal
        tt = expand_like(t, x0)
        x_t = (1 - tt) * x0 + tt * noise
        return x_t, t, noise - x0, torch.ones_like(t)


class Diffusion(_Process):
    """VP diffusion with a shifted cosine schedule; the model predicts x0, sigmoid-weighted MSE."""

    LOGSNR_MIN, LOGSNR_MAX = -15.0, 15.0

    def __init__(self, cfg: ObjectiveConfig):
        self.cfg = cfg

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        t_min, t_max = self._t_range()
        t = t_min + t.float() * (t_max - t_min)
        return -2 * torch.log(torch.tan(math.pi * t / 2)) + 2 * math.log(self.cfg.schedule_shift)

    @staticmethod
    def alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()

    def _t_range(self) -> tuple[float, float]:
        """The t interval of the truncated cosine schedule whose logSNR spans [LOGSNR_MIN, LOGSNR_MAX]."""
        return (math.atan(math.exp(-0.5 * self.LOGSNR_MAX)) * 2 / math.pi,
                math.atan(math.exp(-0.5 * self.LOGSNR_MIN)) * 2 / math.pi)

    def neg_dlogsnr_dt(self, t: torch.Tensor) -> torch.Tensor:
        """−dλ/dt of the schedule above: 2π·(t_max − t_min) / sin(π t'), t' = t_min + t·(t_max − t_min)."""
        t_min, t_max = self._t_range()
        return 2 * math.pi * (t_max - t_min) / torch.sin(math.pi * (t_min + t.float() * (t_max - t_min)))

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample weight on the x0-MSE so that, with t ~ U(0, 1), the loss is Kingma & Gao's (2023)
        L = ½·E_t[w(λ_t)·(−dλ/dt)·‖ε − ε̂‖²] with the sigmoid weighting w(λ) = sigmoid(bias − λ).
        ‖ε − ε̂‖² = e^λ·‖x0 − x̂0‖² for the ε̂ implied by x̂0, hence ½·sigmoid(b − λ)·e^λ·(−dλ/dt)."""
        lam = self.logsnr(t)
        return 0.5 * torch.sigmoid(self.cfg.sigmoid_bias - lam) * lam.exp() * self.neg_dlogsnr_dt(t)

    def training_inputs(self, x0: torch.Tensor, noise: torch.Tensor, u: torch.Tensor):
        """u: (B,) standard normal draws, mapped to t ~ U(0, 1) -> (x_t, t, target, weight)."""
        t = 0.5 * (1 + torch.erf(u / math.sqrt(2)))  # Φ(u): uniform on (0, 1)
        lam = self.logsnr(t)
        a, s = self.alpha_sigma(lam)
        x_t = expand_like(a, x0) * x0 + expand_like(s, x0) * noise
        return x_t, t, x0, self.weight(t)


def build_objective(cfg: ObjectiveConfig) -> RectifiedFlow | Diffusion:
    cfg.validate()
    return RectifiedFlow(cfg) if cfg.kind == "rectified_flow" else Diffusion(cfg)
