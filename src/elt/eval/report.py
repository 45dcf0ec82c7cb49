"""Sample-quality report: FID (Inception), FD in a dataset classifier's space, precision/recall,
class-consistency and Inception Score, each distance with its real-vs-real floor.

Protocol (recorded in every report): reference = the `train` split of the reference data (all of it; its
features are cached); Fréchet distances are between the samples' and the reference's features; the floor is
the same distance for n real held-out images (the `test` split in a fixed permutation; without a test split
a disjoint half of the train split) at the samples' count n. Precision/recall (k = 3) compare the n samples
with n reference images (fixed permutation); their floor compares the n held-out images with the same n
reference images. The Inception Score uses the dataset classifier's probabilities (the bundled Inception has
no classification head); its floor is the score of the n held-out real images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data import DataError
from .classifier import WEIGHTS_NAME, check_input, class_consistency, embed, load_classifier, probabilities
from .frechet import feature_stats, frechet_distance
from .inception import PROTOCOL as INCEPTION_PROTOCOL, InceptionFeatures, file_sha1
from .inception_score import inception_score
from .manifold import precision_recall
from .reference import cached_features, reference_and_floor
from .samples import check_label_range, check_labels

FEATURES = ("inception", "classifier")
METRIC_NAME = {"inception": "fid", "classifier": "fd_classifier"}


@dataclass
class FeatureSpace:
    name: str                                   # "inception" | "classifier"
    extractor_id: str                           # cache key: changes with the weights
    embed: Callable[[torch.Tensor], np.ndarray]  # uint8 images -> (N, D)
    protocol: str


class QualityEvaluator:
    """Scores sample sets against one reference data set; real features are computed once (and cached)."""

    def __init__(self, ref: str, features: tuple[str, ...] = FEATURES, classifier: str | None = None,
                 inception: str | None = None, seed: int = 0, cache_dir: str | os.PathLike | None = None,
                 pr_k: int = 3):
        unknown = set(features) - set(FEATURES)
        if unknown or not features:
            raise DataError(f"--features {sorted(unknown) or '(none)'}: choose from {list(FEATURES)} for images "
                            f"(i3d is for clip samples)")
        if "classifier" in features and not classifier:
            raise DataError("classifier features need --classifier CLS_DIR (made by `elt eval train-classifier "
                            "DATA --out CLS_DIR`), or pass --features inception")
        self.ref, self.seed, self.cache_dir, self.pr_k = ref, seed, cache_dir, pr_k
        self.classifier = load_classifier(classifier) if classifier else None
        self.spaces: list[FeatureSpace] = []
        for name in features:
            if name == "inception":
                net = InceptionFeatures(inception)
                self.spaces.append(FeatureSpace(name, net.name, lambda x, net=net: net(x), INCEPTION_PROTOCOL))
            else:
                clf = self.classifier
                cid = f"classifier-{file_sha1(Path(classifier) / WEIGHTS_NAME)[:12]}"
                self.spaces.append(FeatureSpace(name, cid, lambda x, clf=clf: embed(clf, x).numpy(),
                                                f"classifier penultimate layer ({classifier})"))
        self._real: dict[tuple[int, int], tuple] = {}

    def load_reference(self, size: int, channels: int) -> None:
        """Read the real images for samples of this size now (callers do it before sampling, so that a bad
        reference fails before anything is sampled or written); kept for evaluate()."""
        key = (size, channels)
        if key not in self._real:
            self._real[key] = (*reference_and_floor(self.ref, size, channels, self.seed), {})

    def _reference(self, size: int, channels: int, space: FeatureSpace):
        self.load_reference(size, channels)
        ref_imgs, floor_imgs, floor_from, feats = self._real[(size, channels)]
        if space.name not in feats:
            feats[space.name] = (cached_features(space.extractor_id, ref_imgs, space.embed, self.cache_dir),
                                 cached_features(space.extractor_id, floor_imgs, space.embed, self.cache_dir))
        return (*feats[space.name], floor_imgs, floor_from)

    def reference_features(self, size: int, channels: int, name: str) -> np.ndarray:
        """(M, D) features of the reference images in the feature space `name` (one of the evaluator's)."""
        space = next((sp for sp in self.spaces if sp.name == name), None)
        if space is None:
            raise DataError(f"this evaluation has no {name} features: add {name} to --features")
        return self._reference(size, channels, space)[0]

    def evaluate(self, samples: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict:
        """uint8 samples (N, H, W, C) and their labels -> metrics dict (see the module docstring)."""
        samples = torch.as_tensor(np.asarray(samples)) if not isinstance(samples, torch.Tensor) else samples
        if samples.dtype != torch.uint8 or samples.ndim != 4 or samples.shape[1] != samples.shape[2]:
            raise DataError(f"samples must be uint8 N×H×W×C square images, got {samples.dtype} "
                            f"{tuple(samples.shape)}")
        n, size, _, channels = samples.shape
        if n == 0:
            raise DataError("no samples to evaluate: sample at least one image per class")
        if n <= self.pr_k:  # Fréchet distances need 2 samples, precision/recall k + 1
            raise DataError(f"{n} samples are too few for the reference metrics (precision/recall with k = "
                            f"{self.pr_k} need at least {self.pr_k + 1}): sample more, e.g. --per-class 10")
        if self.classifier is not None:  # check before any (slow) feature extraction
            check_input(self.classifier, samples)
            check_labels(labels, n)
            check_label_range(labels, self.classifier.num_classes)
        nchw = samples.permute(0, 3, 1, 2).contiguous()
        g = torch.Generator().manual_seed(self.seed)
        out: dict = {"n": n}
        protocol: dict = {"samples": n, "seed": self.seed, "pr_k": self.pr_k}
        floor_imgs = None
        for space in self.spaces:
            ref_f, floor_f, floor_imgs, floor_from = self._reference(size, channels, space)
            m = min(n, len(floor_f))
            gen_f = space.embed(nchw)
            ref_stats = feature_stats(ref_f)
            metric = METRIC_NAME[space.name]
            out[metric] = frechet_distance(*feature_stats(gen_f), *ref_stats)
            out[f"{metric}_real_floor"] = frechet_distance(*feature_stats(floor_f[:m]), *ref_stats)
            ref_n = ref_f[torch.randperm(len(ref_f), generator=g)[:n].numpy()]
            pr, pr_floor = precision_recall(ref_n, gen_f, self.pr_k), precision_recall(ref_n, floor_f[:m], self.pr_k)
            out[f"{space.name}_precision"], out[f"{space.name}_recall"] = pr["precision"], pr["recall"]
            out[f"{space.name}_pr_real_floor"] = pr_floor
            protocol[space.name] = {"features": space.protocol, "reference": f"{self.ref} train split "
                                    f"({len(ref_f)} images)", "floor": f"{m} real images from the {floor_from}"}
        if self.classifier is not None:
            y = torch.as_tensor(np.asarray(labels)).long()
            out["class_consistency"] = class_consistency(self.classifier, nchw, y)
            splits = 10 if n >= 100 else 1
            out["inception_score"] = inception_score(probabilities(self.classifier, nchw).numpy(), splits)
            if floor_imgs is None:
                floor_imgs = reference_and_floor(self.ref, size, channels, self.seed)[1]
            real = floor_imgs[: min(n, len(floor_imgs))]
            out["inception_score_real_floor"] = inception_score(probabilities(self.classifier, real).numpy(),
                                                                splits)
            protocol["inception_score"] = (f"exp E KL(p(y|x) || p(y)) with the dataset classifier's "
                                           f"probabilities, {splits} splits; floor: {len(real)} real held-out images")
        out["protocol"] = protocol
        return out


def headline(report: dict) -> dict:
    """The scalar metrics of a report, for one-line printing and tables."""
    keys = ["n", "fid", "fid_real_floor", "fd_classifier", "fd_classifier_real_floor", "inception_precision",
            "inception_recall", "classifier_precision", "classifier_recall"]
    h = {k: report[k] for k in keys if k in report}
    if "class_consistency" in report:
        h["class_consistency"] = report["class_consistency"]["accuracy"]
    if "inception_score" in report:
        h["inception_score"] = report["inception_score"][0]
    return h


def default_features(features: list[str] | tuple[str, ...] | None, classifier: str | None) -> tuple[str, ...]:
    """The feature spaces to score in: the given ones, else Inception plus the classifier when one is given."""
    return tuple(features) if features else ("inception",) + (("classifier",) if classifier else ())
