"""Training objective of the masked family (MaskGIT): mask-ratio schedules, random masks, masked losses.

Ground truth = cross-entropy on masked positions only; distillation = soft-target cross-entropy
−Σ_v p_teacher(v)·log p_student(v) on the same positions, no temperature (the ELT paper's L_dist).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SCHEDULES = ("cosine", "linear", "square")


@dataclass
class MaskedObjectiveConfig:
    kind: str = "maskgit"
    mask_schedule: str = "cosine"  # γ(u): share of tokens masked at training ratio u ~ U[0, 1), and at decoding
    label_smoothing: float = 0.1  # on the ground-truth cross-entropy (MaskGIT's 0.1)

    def validate(self) -> None:
        if self.kind != "maskgit":
            raise ValueError(f"objective.kind must be 'maskgit' for the masked family, got {self.kind!r}")
        if self.mask_schedule not in SCHEDULES:
            raise ValueError(f"objective.mask_schedule must be one of {SCHEDULES}, got {self.mask_schedule!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"objective.label_smoothing must be in [0, 1), got {self.label_smoothing}")


def mask_ratio(u: torch.Tensor | float, schedule: str = "cosine") -> torch.Tensor:
    """γ(u) for u in [0, 1]: 1 at u = 0 (all masked), 0 at u = 1 (none masked), decreasing."""
    u = torch.as_tensor(u, dtype=torch.float64)
    if schedule == "cosine":
        return torch.cos(math.pi / 2 * u)
    if schedule == "linear":
        return 1 - u
    if schedule == "square":
        return 1 - u * u
    raise ValueError(f"unknown mask schedule {schedule!r}; choose one of {SCHEDULES}")


def draw_mask(batch: int, tokens: int, generator: torch.Generator, schedule: str = "cosine") -> torch.Tensor:
    """A training mask (B, T) bool: per sample r = γ(u), u ~ U[0, 1), and ceil(r·T) ∈ [1, T] random positions."""
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    n = torch.ceil(mask_ratio(u, schedule) * tokens).clamp(1, tokens).long()  # (B,)
    scores = torch.rand(batch, tokens, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # rank of each position's score within its row
    return ranks < n[:, None]


def _per_masked_token(total: torch.Tensor, mask: torch.Tensor, count: torch.Tensor | float | None) -> torch.Tensor:
    """total / count, count defaulting to this batch's masked tokens. Data-parallel ranks pass their share of
    the global count (global masked tokens / world size): the ranks' gradient average is then the gradient of
    the global mean, exactly as in one process."""
    return total / (mask.sum().clamp_min(1) if count is None else count)


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                         label_smoothing: float = 0.0, count=None) -> torch.Tensor:
    """Mean cross-entropy over the masked positions only. logits (B, T, V), targets (B, T), mask (B, T) bool."""
    total = F.cross_entropy(logits[mask].float(), targets[mask], label_smoothing=label_smoothing, reduction="sum")
    return _per_masked_token(total, mask, count)


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, count=None) -> torch.Tensor:
    """−Σ_v p_teacher(v)·log p_student(v), mean over masked positions; no gradient into the teacher."""
    p_teacher = teacher[mask].detach().float().softmax(-1)  # (M, V)
    log_p_student = student[mask].float().log_softmax(-1)
    return _per_masked_token(-(p_teacher * log_p_student).sum(), mask, count)


class MaskedTokens:
    """The masked-family counterpart of the flow processes: masks a token batch and scores predictions."""

    def __init__(self, cfg: MaskedObjectiveConfig, mask_id: int):
        self.cfg, self.mask_id = cfg, mask_id

    def training_inputs(self, tokens: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T) -> (inputs with [MASK] at the masked positions (B, T), mask (B, T) bool)."""
        mask = draw_mask(tokens.shape[0], tokens.shape[1], generator, self.cfg.mask_schedule).to(tokens.device)
        return torch.where(mask, torch.full_like(tokens, self.mask_id), tokens), mask

    def gt_loss(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, count=None) -> torch.Tensor:
        return masked_cross_entropy(logits, targets, mask, self.cfg.label_smoothing, count)

    def dist_loss(self, student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, count=None) -> torch.Tensor:
        return soft_cross_entropy(student, teacher, mask, count)
