"""Improved precision and recall (Kynkäänniemi et al., 2019): k-NN manifold estimates in feature space.

precision = share of generated samples inside the real manifold (the union of balls around each real
feature with radius = distance to its k-th nearest real neighbour); recall = share of real samples inside
the generated manifold, built the same way. The paper uses k = 3 and equal sample counts.
"""
from __future__ import annotations

import numpy as np
import torch

CHUNK = 1024


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float64)
    if t.ndim != 2:
        raise ValueError(f"features must be (N, D), got {tuple(t.shape)}")
    return t


def knn_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    """(N, D) -> (N,) distance from each point to its k-th nearest other point."""
    if not 1 <= k < len(feats):
        raise ValueError(f"k={k} needs 1 <= k < N={len(feats)}")
    radii = [torch.cdist(feats[i:i + CHUNK], feats).kthvalue(k + 1, dim=1).values  # +1: itself at 0
             for i in range(0, len(feats), CHUNK)]
    return torch.cat(radii)


def coverage_share(manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor) -> float:
    """Share of `queries` within radius_j of some manifold point j."""
    inside = [(torch.cdist(queries[i:i + CHUNK], manifold) <= radii[None]).any(1)
              for i in range(0, len(queries), CHUNK)]
    return torch.cat(inside).double().mean().item()


def precision_recall(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k: int = 3) -> dict:
    """{'precision', 'recall'} of `fake` against `real` features (both (N, D))."""
    r, f = _as_tensor(real), _as_tensor(fake)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature sizes differ: real {r.shape[1]}, fake {f.shape[1]}")
    return {"precision": coverage_share(r, knn_radii(r, k), f), "recall": coverage_share(f, knn_radii(f, k), r)}
