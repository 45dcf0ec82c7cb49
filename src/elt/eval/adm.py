"""`elt eval SAMPLES.npz --ref adm:PATH`: scores against an ADM reference batch (guided-diffusion's evaluator
format, e.g. VIRTUAL_imagenet256_labeled.npz), so numbers are comparable with the DiT, SiT and ELIT papers.

The batch holds reference images `arr_0` (uint8 N×H×W×3) and/or precomputed Inception statistics `mu`, `sigma`
(pool3, 2048-d) and `mu_s`, `sigma_s` (sFID's spatial features). Statistics are used when present, as ADM's
evaluator does; otherwise they are computed from `arr_0` with the bundled TF-FID Inception (features cached by
content). Metrics: FID (pool3), sFID (`mixed_6/conv`, its first 7 channels: 7·17·17 = 2,023-d, ADM's
definition; the tensor is taken from the same TF-ported network, its agreement with ADM's TensorFlow graph is
not checked here), precision/recall (k = 3 on pool3 features, needs `arr_0`; at most 10,000 of each side).
Inception Score: n/a (the bundled network has no classification head). The protocol goes into the report.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..data import DataError
from ..hashing import file_sha256
from .frechet import feature_stats, frechet_distance
from .inception import PROTOCOL as INCEPTION_PROTOCOL
from .inception import InceptionFeatures
from .manifold import precision_recall
from .reference import cached_features

PREFIX = "adm:"
PR_MAX = 10_000  # samples per side for precision/recall
POOL, SPATIAL = 2048, 2023


def is_adm_ref(ref: str | None) -> bool:
    return bool(ref) and str(ref).startswith(PREFIX)


class AdmReference:
    """An ADM reference batch: Inception statistics (read or computed) and, with `arr_0`, pool3 features."""

    def __init__(self, ref: str, net: InceptionFeatures):
        self.path = Path(ref[len(PREFIX):]).expanduser()
        if not self.path.is_file():
            raise DataError(f"ADM reference batch {self.path} not found: pass --ref adm:FILE.npz (e.g. "
                            f"VIRTUAL_imagenet256_labeled.npz from guided-diffusion's evaluation suite)")
        try:
            z = np.load(self.path, allow_pickle=False)
            keys = set(z.files)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise DataError(f"cannot read {self.path} as an .npz ({' '.join(str(e).split())}): pass an ADM "
                            f"reference batch") from None
        if not ({"mu", "sigma"} <= keys or "arr_0" in keys):
            raise DataError(f"{self.path} holds {sorted(keys)}, neither reference images (arr_0) nor Inception "
                            f"statistics (mu, sigma): pass an ADM reference batch")
        self.net, self.sha256 = net, file_sha256(self.path)
        self.images = self._images(z) if "arr_0" in keys else None
        self.features = None if self.images is None else cached_features(net.name, self.images, net)
        if {"mu", "sigma"} <= keys:
            self.stats, self.stats_from = self._stats(z, "mu", "sigma", POOL), "precomputed mu/sigma"
        else:
            self.stats, self.stats_from = feature_stats(self.features), f"{len(self.images)} images of arr_0"
        if {"mu_s", "sigma_s"} <= keys:
            self.spatial = self._stats(z, "mu_s", "sigma_s", SPATIAL)
        elif self.images is not None:
            self.spatial = feature_stats(cached_features(f"{net.name}-mixed6", self.images, net.spatial))
        else:
            self.spatial = None

    def _images(self, z) -> torch.Tensor:
        arr = z["arr_0"]
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
            raise DataError(f"{self.path}: arr_0 must be uint8 N×H×W×3 reference images, got {arr.dtype} "
                            f"{arr.shape}")
        return torch.from_numpy(arr).permute(0, 3, 1, 2)  # (N, 3, H, W)

    def _stats(self, z, mu_key: str, sigma_key: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        mu, sigma = z[mu_key], z[sigma_key]
        if mu.shape != (dim,) or sigma.shape != (dim, dim):
            raise DataError(f"{self.path}: {mu_key} must be ({dim},) and {sigma_key} ({dim}, {dim}), got {mu.shape} "
                            f"and {sigma.shape}: pass a batch made with the Inception pool3 / mixed_6 features")
        return mu.astype(np.float64), sigma.astype(np.float64)

    def evaluate(self, samples: np.ndarray, seed: int = 0) -> dict:
        """uint8 samples (N, H, W, 3) -> {fid, sfid, precision, recall, inception_score, protocol}."""
        if samples.ndim != 4 or samples.shape[-1] != 3:
            raise DataError(f"the ADM reference is RGB: samples must be N×H×W×3, got {samples.shape}")
        if len(samples) < 2:
            raise DataError("FID needs at least 2 samples")
        x = torch.from_numpy(np.ascontiguousarray(samples)).permute(0, 3, 1, 2)
        pool = self.net(x)
        out = {"fid": frechet_distance(*feature_stats(pool), *self.stats)}
        out["sfid"] = (frechet_distance(*feature_stats(self.net.spatial(x)), *self.spatial)
                       if self.spatial is not None else None)
        if self.features is not None:
            g = torch.Generator().manual_seed(seed)
            pick = lambda f: f[torch.randperm(len(f), generator=g)[:PR_MAX].numpy()]  # noqa: E731
            out.update(precision_recall(pick(self.features), pick(pool), 3))
        else:
            out.update({"precision": None, "recall": None})
        out["inception_score"] = None
        out["protocol"] = {
            "reference": f"ADM batch {self.path.name} (sha256 {self.sha256[:16]}): FID against {self.stats_from}",
            "features": INCEPTION_PROTOCOL,
            "sfid": "mixed_6/conv of the same network, first 7 channels, 17x17 (2,023-d), ADM's definition"
                    if out["sfid"] is not None else "n/a: the batch has no mu_s/sigma_s and no arr_0",
            "precision_recall": f"k = 3 on pool3 features, at most {PR_MAX} of each side" if self.features
            is not None else "n/a: the batch has no arr_0 (statistics only)",
            "inception_score": "n/a: the bundled Inception has no classification head",
            "samples": int(len(samples))}
        return out
