"""Sample-quality report in a dataset classifier's space: class-consistency and FD with its real floor.

Protocol (recorded in the report): reference = the `train` split of the reference data; FD-classifier =
Fréchet distance between the samples' and the reference's penultimate classifier features; floor = the same
distance for real held-out images (`test` split, first n in a fixed permutation) at the same sample count n —
or, without a test split, for a disjoint half of the reference against the other half.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import DataError, load_dataset
from .classifier import DigitClassifier, class_consistency, embed
from .frechet import frechet_distance, feature_stats


def _all_images(ds) -> torch.Tensor:
    return ds.get_batch(torch.arange(len(ds)))[0]  # uint8 (N, C, H, W)


def classifier_report(clf: DigitClassifier, samples: np.ndarray, labels: np.ndarray, ref: str,
                      seed: int = 0) -> dict:
    """Class-consistency, FD-classifier of `samples` against `ref`'s train split, and the real-vs-real floor."""
    n, h, w, c = samples.shape  # the reference is brought to the samples' size and channels
    if h != w:
        raise DataError(f"samples of {h}×{w} pixels: only square images are supported")
    reference = embed(clf, _all_images(load_dataset(ref, "train", image_size=h, channels=c))).numpy()
    g = torch.Generator().manual_seed(seed)
    try:
        held_out = embed(clf, _all_images(load_dataset(ref, "test", image_size=h, channels=c))).numpy()
        floor_set, ref_stats, floor_from = held_out, feature_stats(reference), "test split"
    except DataError:
        perm = torch.randperm(len(reference), generator=g).numpy()
        half = len(reference) // 2
        floor_set, reference = reference[perm[:half]], reference[perm[half:]]
        ref_stats, floor_from = feature_stats(reference), "disjoint half of the train split"
    m = min(n, len(floor_set))
    pick = torch.randperm(len(floor_set), generator=g)[:m].numpy()
    fd = frechet_distance(*feature_stats(embed(clf, samples).numpy()), *ref_stats)
    floor = frechet_distance(*feature_stats(floor_set[pick]), *ref_stats)
    return {"class_consistency": class_consistency(clf, samples, torch.as_tensor(labels)),
            "fd_classifier": fd, "fd_classifier_real_floor": floor,
            "protocol": {"samples": n, "reference": f"{ref} train split ({len(reference)} images)",
                         "floor": f"{m} real images from the {floor_from}", "features": "classifier penultimate "
                         f"layer ({reference.shape[1]}-d)", "seed": seed}}
