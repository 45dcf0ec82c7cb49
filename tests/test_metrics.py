"""Precision/recall (k-NN manifolds) and the Inception Score on cases with known answers."""
import numpy as np
import pytest

from elt.eval.inception_score import inception_score
from elt.eval.manifold import knn_radii, precision_recall

import torch


def test_knn_radius_is_distance_to_kth_other_point():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0, 6.0]


def test_identical_sets_have_full_precision_and_recall():
    x = np.random.default_rng(0).normal(size=(200, 8))
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}


def test_far_apart_sets_have_zero_precision_and_recall():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(100, 4)), rng.normal(size=(100, 4)) + 100
    assert precision_recall(real, fake) == {"precision": 0.0, "recall": 0.0}


def test_mode_collapse_keeps_precision_and_loses_recall():
    rng = np.random.default_rng(0)
    real = np.concatenate([rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 50])  # two modes
    fake = rng.normal(size=(400, 2))                                                     # one mode only
    pr = precision_recall(real, fake)
    assert pr["precision"] > 0.95
    assert 0.4 < pr["recall"] <= 0.5


def test_precision_recall_rejects_mismatched_features():
    with pytest.raises(ValueError, match="feature sizes"):
        precision_recall(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="k=3"):
        precision_recall(np.zeros((3, 2)), np.zeros((3, 2)))


def test_inception_score_bounds():
    k = 10
    confident_balanced = np.eye(k)[np.arange(1000) % k]
    assert 9.5 < inception_score(confident_balanced)[0] <= k  # chunks of 100 are only roughly balanced
    sorted_by_class = np.eye(k)[np.arange(1000) // 100]  # as `elt sample --per-class` writes them
    assert 9.5 < inception_score(sorted_by_class)[0] <= k
    uniform = np.full((1000, k), 1 / k)
    assert inception_score(uniform)[0] == pytest.approx(1.0)
    collapsed = np.eye(k)[np.zeros(1000, int)]
    assert inception_score(collapsed)[0] == pytest.approx(1.0)
    half = np.eye(k)[np.arange(1000) % 5]  # confident, 5 of 10 classes used
    assert 4.7 < inception_score(half)[0] <= 5


def test_inception_score_rejects_non_probabilities():
    with pytest.raises(ValueError, match="probability"):
        inception_score(np.ones((100, 10)))
