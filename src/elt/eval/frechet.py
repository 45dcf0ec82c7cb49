"""Fréchet distance between Gaussians fitted to feature sets (FID / FD-classifier), computed stably.

    FD = ||μ1 − μ2||² + tr(Σ1) + tr(Σ2) − 2·tr((Σ1^½ Σ2 Σ1^½)^½)

The matrix square roots come from symmetric eigendecompositions in float64 (eigenvalues clipped at 0), so
the trace term is real by construction: no `scipy.linalg.sqrtm` imaginary parts or NaNs on near-singular
covariances (a known failure of the usual recipe with some BLAS builds).
"""
from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,), unbiased covariance (D, D), both float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors of shape (N, D), got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    r1 = _psd_sqrt(s1)
    cross = np.linalg.eigvalsh((lambda m: (m + m.T) / 2)(r1 @ s2 @ r1))
    trace_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    diff = mu1 - mu2
    return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt))


def frechet_distance_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between two (N, D) feature sets."""
    return frechet_distance(*feature_stats(a), *feature_stats(b))
