"""Label dropout for classifier-free guidance: a label becomes the null label with probability p."""
from __future__ import annotations

import torch


def drop_labels(labels: torch.Tensor, p: float, null_label: int, g: torch.Generator, batch: int | None = None,
                rows: slice = slice(None)) -> torch.Tensor:
    """labels (b,) -> labels (b,) with some set to `null_label`.

    Draws `batch` uniforms from `g` (default len(labels)), one per row of the global batch so that every rank
    draws the same, and keeps `rows` of them (this rank's part, which `labels` holds)."""
    drop = torch.rand(len(labels) if batch is None else batch, generator=g) < p  # (B,)
    return torch.where(drop[rows], torch.full_like(labels, null_label), labels)


__all__ = ["drop_labels"]
