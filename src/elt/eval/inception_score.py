"""Inception Score from any classifier's class probabilities: exp(E_x KL(p(y|x) || p(y))).

With the dataset classifier (10 digit classes) it lies in [1, 10]: 10 = every sample confidently one class
and the classes evenly used. Reported as mean ± std over `splits` disjoint chunks, as in Salimans et al.
The rows are shuffled (fixed seed) before splitting: sample sets are often ordered by class, and a chunk
holding one class only would score ~1 whatever the quality.
"""
from __future__ import annotations

import numpy as np


def inception_score(probs: np.ndarray, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """(N, K) probabilities (rows sum to 1) -> (mean, std) of the score over `splits` chunks."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) < splits or splits < 1:
        raise ValueError(f"need (N, K) probabilities with N >= splits={splits}, got {p.shape}")
    if not np.allclose(p.sum(1), 1, atol=1e-3) or (p < 0).any():
        raise ValueError("rows of probs must be probability vectors (softmax outputs)")
    p = p[np.random.default_rng(seed).permutation(len(p))]
    scores = []
    for chunk in np.array_split(p, splits):
        marginal = chunk.mean(0, keepdims=True)
        kl = (chunk * (np.log(np.clip(chunk, 1e-12, None)) - np.log(np.clip(marginal, 1e-12, None)))).sum(1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
