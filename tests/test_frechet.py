"""Fréchet distance: analytic Gaussian cases, invariances, and stability on singular covariances."""
import numpy as np
import pytest

from elt.eval.frechet import feature_stats, frechet_distance, frechet_distance_features


def test_equal_covariances_give_squared_mean_difference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    sigma = a @ a.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-9, abs=1e-9)


def test_one_dimensional_closed_form():
    # FD(N(m1, s1²), N(m2, s2²)) = (m1 − m2)² + (s1 − s2)²
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_commuting_diagonal_covariances():
    d1, d2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    expected = np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert frechet_distance(np.zeros(3), np.diag(d1), np.zeros(3), np.diag(d2)) == pytest.approx(expected)


def test_identical_and_shuffled_sets():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8))
    assert frechet_distance_features(f, f) == pytest.approx(0.0, abs=1e-8)
    g = rng.normal(size=(300, 8)) + 0.5
    assert frechet_distance_features(f, g) == pytest.approx(frechet_distance_features(f[::-1], g[rng.permutation(300)]))
    assert frechet_distance_features(f, g) > 0.1


def test_rank_deficient_covariances_stay_finite_and_real():
    rng = np.random.default_rng(2)
    low = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 64))  # 64-D features of rank 3
    other = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 64))
    d = frechet_distance_features(low, other)
    assert np.isfinite(d) and d > 0
    assert frechet_distance_features(low, low) == pytest.approx(0.0, abs=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
