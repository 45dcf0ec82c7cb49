"""Reconstruction quality of images in [-1, 1], measured on the [0, 1] scale."""
from __future__ import annotations

import torch


def unit_mse(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image MSE (B,) on the [0, 1] scale of (B, ...) images in [-1, 1]; `recon` is clamped to [-1, 1]."""
    return ((recon.detach().float().clamp(-1, 1) - x.float()) / 2).pow(2).flatten(1).mean(1)


def psnr_db(mse: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) of [0, 1]-scale MSEs; an exact reconstruction counts as 100 dB."""
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def psnr(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) in dB of (B, ...) images in [-1, 1]."""
    return psnr_db(unit_mse(recon, x))
