"""Vector quantizer: nearest code by L2, straight-through gradient, EMA codebook with dead-code restarts.

The codebook is a set of buffers, not parameters: the optimizer never touches it. In training mode each
forward updates, under no_grad and in fp32 (even under autocast):

    N_k ← d·N_k + (1−d)·n_k            (EMA count: how often code k is chosen per batch)
    S_k ← d·S_k + (1−d)·Σ_{z→k} z      (EMA sum of the encoder outputs assigned to k)
    e_k ← S_k / Ñ_k   for codes used in this batch, Ñ = Laplace-smoothed N

then every code with N_k < dead_threshold is restarted at a random encoder output of the batch, with its
stats reset to N_k = dead_threshold, S_k = dead_threshold·e_k. A restarted code survives the next step only
if it is chosen about dead_threshold times per batch. The counts start at 0, so the first training step
restarts (nearly) every code: the codebook is initialised from encoder outputs.

Random draws use torch's global RNG, so a run is deterministic given `torch.manual_seed`. The updates are
local to the process: the tokenizer trainer is single-process (under `torchrun`, rank 0 trains it while the
other ranks wait), so no collective may run here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VectorQuantizer(nn.Module):
    """(B, D, h, w) encoder outputs -> nearest codes, with a straight-through gradient and a commitment loss.

    `forward(z, update=None)` returns (quantized (B, D, h, w), indices (B, h, w) int64, commitment loss (),
    stats dict); the codebook is updated when `update` is True (default: `self.training`).
    """

    def __init__(self, num_codes: int, code_dim: int, decay: float = 0.99, commitment: float = 0.25,
                 dead_threshold: float = 1.0, eps: float = 1e-5):
        super().__init__()
        if num_codes < 1 or code_dim < 1:
            raise ValueError(f"a codebook needs num_codes >= 1 and code_dim >= 1, got {num_codes}, {code_dim}")
        if not 0 < decay < 1:
            raise ValueError(f"the codebook EMA decay must be in (0, 1), got {decay}")
        if commitment < 0 or dead_threshold < 0:
            raise ValueError(f"commitment and dead_threshold must be >= 0, got {commitment}, {dead_threshold}")
        self.num_codes, self.code_dim = num_codes, code_dim
        self.decay, self.commitment, self.dead_threshold, self.eps = decay, commitment, dead_threshold, eps
        self.register_buffer("codebook", torch.randn(num_codes, code_dim))  # (K, D)
        self.register_buffer("ema_count", torch.zeros(num_codes))  # (K,)
        self.register_buffer("ema_sum", torch.zeros(num_codes, code_dim))  # (K, D)

    # ---- lookup ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) int64 index of the nearest code (L2, fp32)."""
        cb = self.codebook
        flat = flat.float()
        d2 = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ cb.t() + cb.pow(2).sum(1)[None])  # (N, K)
        return d2.argmin(dim=1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *grid) int64 -> code vectors (B, D, *grid) fp32 (grid = (h, w) or (t, h, w))."""
        return F.embedding(indices, self.codebook).movedim(-1, 1).contiguous()

    # ---- forward --------------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor, update: bool | None = None):
        # z: (B, D, *grid), grid = (h, w) for images or (t, h, w) for clips
        if z.ndim not in (4, 5) or z.shape[1] != self.code_dim:
            raise ValueError(f"the quantizer expects (B, {self.code_dim}, h, w) or (B, {self.code_dim}, t, h, w) "
                             f"encoder outputs, got {tuple(z.shape)}")
        update = self.training if update is None else update
        B, D, grid = z.shape[0], z.shape[1], tuple(z.shape[2:])
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            flat = z.movedim(1, -1).reshape(-1, D)  # (N, D), N = B·prod(grid), raster order (first grid axis slowest)
            idx = self.nearest(flat)  # (N,)
            counts = torch.bincount(idx, minlength=self.num_codes).float()  # (K,)
            restarts = self._update(flat.detach(), idx, counts) if update else 0
            q = F.embedding(idx, self.codebook).view(B, *grid, D).movedim(-1, 1)  # (B, D, *grid)
            commit = self.commitment * F.mse_loss(z, q.detach())
            quantized = z + (q - z).detach()  # straight-through: forward q, gradient of z
        p = counts / counts.sum()
        stats = {"perplexity": float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())),
                 "codes_used": int((counts > 0).sum()), "restarts": int(restarts)}
        return quantized, idx.view(B, *grid), commit, stats

    # ---- codebook update --------------------------------------------------------------------------------
    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> int:
        """One EMA step and the dead-code restarts; `flat` (N, D) fp32, `idx` (N,). Returns the restart count."""
        d = self.decay
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)  # (K, D)
        used = counts > 0
        self.ema_count.mul_(d).add_(counts, alpha=1 - d)
        self.ema_sum.mul_(d).add_(sums, alpha=1 - d)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n  # Laplace smoothing
        self.codebook[used] = self.ema_sum[used] / smoothed[used, None]
        dead = (self.ema_count < self.dead_threshold).nonzero().squeeze(1)  # (n_dead,)
        if dead.numel() == 0:
            return 0
        if flat.shape[0] >= dead.numel():
            pick = torch.randperm(flat.shape[0], device=flat.device)[:dead.numel()]
        else:
            pick = torch.randint(flat.shape[0], (dead.numel(),), device=flat.device)
        fresh = flat[pick].clone()  # (n_dead, D)
        self.codebook[dead] = fresh
        self.ema_count[dead] = self.dead_threshold
        self.ema_sum[dead] = fresh * self.dead_threshold
        return int(dead.numel())

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, code_dim={self.code_dim}, decay={self.decay}, "
                f"commitment={self.commitment}, dead_threshold={self.dead_threshold}")
