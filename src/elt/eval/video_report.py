"""Quality of generated moving-digit clips, each measure beside its real-vs-real floor.

Protocol (recorded in every report): the reference is the first `reference_clips` clips of the data set's
train split (their video-classifier features are cached); the floor is computed on n real clips of the test
split (a fixed permutation; n = the samples' count) exactly as for the samples. Measures:
- `fd_video`: Fréchet distance in the video classifier's 128-d penultimate features, samples vs reference;
- `clip_class_consistency`: the video classifier's digit equals the label's digit;
- `frame_class_consistency` / `identity_persistence`: the frame classifier on every frame (see
  `video_metrics.frame_agreement`);
- `motion_error_px`: RMS residual of the bouncing-model fit of the centroid track (`video_metrics`);
- `direction_accuracy` (labels with a direction, `digit_dir`): the fitted start velocity's quadrant equals the
  label's quadrant;
- `fvd` (with `fvd=True`): the Fréchet distance in the Kinetics I3D's features (`elt.eval.i3d`) against the
  first `fvd_reference` train clips (default min(512, max(128, 2n))), its floor from the same n real test
  clips; the I3D protocol (resize, frame stretching, weights hash) is recorded. Grey 32-px digits upsampled
  to 224 px are far from Kinetics: read FVD here as a generic video distance beside the in-domain measures.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..data import DataError, load_dataset
from ..data.moving_digits import quadrant
from ..errors import ConfigError
from .frechet import feature_stats, frechet_distance
from .inception import file_sha1
from .reference import cached_features
from .video_classifier import WEIGHTS_NAME, check_clips, embed_clips, load_judge, predict_clips, predict_frames
from .video_metrics import frame_agreement, motion_error

LABEL_KINDS = ("digit", "digit_dir")


def _clips(ds, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (uint8 clips (N, T, H, W, C), labels, digits, quadrants) of a MovingDigits split."""
    clips, labels = ds.get_batch(idx)
    digits, quads = ds.clip_targets(idx)
    return clips.movedim(1, -1).contiguous(), labels, digits, quads


class VideoQualityEvaluator:
    """Scores clip sample sets against a moving-digits data set with a trained video classifier folder."""

    def __init__(self, ref: str, classifier: str, label_kind: str = "digit", seed: int = 0,
                 reference_clips: int = 2000, cache_dir: str | os.PathLike | None = None, fvd: bool = False,
                 i3d_weights: str | None = None, fvd_reference: int | None = None):
        if label_kind not in LABEL_KINDS:
            raise DataError(f"label kind must be one of {', '.join(LABEL_KINDS)}, got {label_kind!r}")
        self.ref, self.label_kind, self.seed, self.cache_dir = ref, label_kind, seed, cache_dir
        self.judge = load_judge(classifier)
        self.extractor_id = f"videoclf-{file_sha1(self.judge.directory / WEIGHTS_NAME)[:12]}"
        train = load_dataset(ref, "train")
        test = load_dataset(ref, "test")
        shape = tuple(train.image_shape)
        if shape != self.judge.clip_shape:
            raise DataError(f"the video classifier in {classifier} was trained on clips {self.judge.clip_shape} "
                            f"(C, T, H, W) but {ref} makes {shape}: train one on {ref}")
        self.ref_clips = _clips(train, torch.arange(min(reference_clips, len(train))))[0]
        perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
        self.floor = _clips(test, perm)
        self._ref_feats: np.ndarray | None = None
        self._floors: dict[int, dict] = {}  # m -> the floor measures of the first m floor clips
        self.i3d = None
        if fvd:
            from .i3d import I3DFeatures

            self.i3d = I3DFeatures(i3d_weights, cache_dir=cache_dir)
        self.fvd_reference = fvd_reference  # None: min(512, max(128, 2n)) for n samples (I3D costs ~1 s a clip)

    @staticmethod
    def headline(report: dict) -> dict:
        return video_headline(report)

    @property
    def num_classes(self) -> int:
        return 40 if self.label_kind == "digit_dir" else 10

    def _reference_features(self) -> np.ndarray:
        if self._ref_feats is None:
            self._ref_feats = cached_features(self.extractor_id, self.ref_clips,
                                              lambda x: embed_clips(self.judge.net, x), self.cache_dir)
        return self._ref_feats

    def _split_label(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels -> (digit, quadrant or None)."""
        if self.label_kind == "digit_dir":
            return labels // 4, labels % 4
        return labels, None

    def _measures(self, clips: torch.Tensor, digits: np.ndarray, quads: np.ndarray | None) -> dict:
        """Every measure except the Fréchet distance, for clips (N, T, H, W, C) with their targets."""
        out = frame_agreement(predict_frames(self.judge, clips), digits)
        pd, _ = predict_clips(self.judge.net, clips)
        out["clip_class_consistency"] = float((pd == digits).mean())
        motion = motion_error(clips.numpy(), self.judge.digit_size, self.judge.record.get("speed_max", 3.0) + 1)
        out["motion_error_px"] = motion["motion_error_px"]
        if quads is not None:
            fitted = quadrant(motion["velocity"][:, 0], motion["velocity"][:, 1])
            out["direction_accuracy"] = float((fitted == quads).mean())
        return out

    def _fvd(self, clips: torch.Tensor, real_clips: torch.Tensor) -> dict:
        """FVD of the samples and of the floor's real clips against the reference clips' I3D features."""
        from .i3d import fvd

        def cached(x):
            return cached_features(self.i3d.name, x, lambda c: self.i3d(c), self.cache_dir)
        size = self.fvd_reference or min(512, max(128, 2 * len(clips)))
        ref = cached(self.ref_clips[:size])
        return {"fvd": fvd(ref, self.i3d(clips)), "fvd_real_floor": fvd(ref, cached(real_clips)),
                "fvd_protocol": f"{self.i3d.protocol}; reference: the first {min(size, len(self.ref_clips))} train "
                                f"clips; floor: {len(real_clips)} real test clips"}

    def _floor(self, m: int, fd) -> dict:
        """Every measure's real-vs-real floor on the first m floor clips; computed once per m (an any-time sweep
        scores the same n at every loop count)."""
        if m not in self._floors:
            real_clips, _, real_digits, real_quads = (a[:m] for a in self.floor)
            floor = self._measures(real_clips, real_digits.numpy(),
                                   real_quads.numpy() if self.label_kind == "digit_dir" else None)
            self._floors[m] = {"fd_video_real_floor": fd(real_clips),
                               **{f"{k}_real_floor": v for k, v in floor.items()}}
        return self._floors[m]

    def evaluate(self, samples: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict:
        """uint8 clips (N, T, H, W, C) and their labels -> metrics dict with floors (module docstring)."""
        clips = torch.as_tensor(np.asarray(samples))
        if clips.dtype != torch.uint8 or clips.ndim != 5:
            raise DataError(f"clip samples must be uint8 N×T×H×W×C, got {clips.dtype} {tuple(clips.shape)}")
        check_clips(self.judge, clips)
        labels = np.asarray(labels).astype(np.int64)
        n = len(clips)
        if n < 2 or len(labels) != n:
            raise DataError(f"need at least 2 clips with one label each, got {n} clips and {len(labels)} labels")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise DataError(f"labels must be in 0..{self.num_classes - 1} for {self.label_kind} labels, got "
                            f"{labels.min()}..{labels.max()}")
        m = min(n, len(self.floor[0]))
        ref_stats = feature_stats(self._reference_features())
        real_clips = self.floor[0][:m]

        def fd(x: torch.Tensor) -> float:
            return frechet_distance(*feature_stats(embed_clips(self.judge.net, x)), *ref_stats)
        out: dict = {"n": n, "fd_video": fd(clips)}
        digits, quads = self._split_label(labels)
        out.update(self._measures(clips, digits, quads))
        out.update(self._floor(m, fd))
        if self.i3d is not None:
            out.update(self._fvd(clips, real_clips))
        out["protocol"] = {
            "samples": n, "seed": self.seed, "label_kind": self.label_kind,
            "reference": f"{self.ref} train split, first {len(self.ref_clips)} clips",
            "floor": f"{m} real clips of the {self.ref} test split (fixed permutation, seed {self.seed})",
            "features": f"video classifier penultimate layer ({self.judge.directory.name}, "
                        f"{self.extractor_id}; held-out digit accuracy {self.judge.record.get('digit_accuracy')})",
            "frame_classifier": f"frame digit accuracy {self.judge.record.get('frame_accuracy')}",
            "motion": "bouncing-model least-squares fit of the intensity-centroid track, RMS residual in px"}
        return out


def wants_fvd(features: list[str] | None) -> bool:
    """--features for clips: none (the video classifier's measures) or i3d (adds FVD); True for FVD."""
    extra = sorted(set(features or []) - {"i3d"})
    if extra:
        raise ConfigError(f"--features {' '.join(extra)} is for images; clips are scored in the video "
                          f"classifier's features, plus FVD with --features i3d")
    return bool(features)


VIDEO_HEADLINE = ("n", "fd_video", "fd_video_real_floor", "fvd", "fvd_real_floor", "clip_class_consistency",
                  "clip_class_consistency_real_floor", "frame_class_consistency",
                  "frame_class_consistency_real_floor", "identity_persistence", "identity_persistence_real_floor",
                  "motion_error_px", "motion_error_px_real_floor", "direction_accuracy",
                  "direction_accuracy_real_floor")


def video_headline(report: dict) -> dict:
    """The scalar metrics of a clip report, for one-line printing and tables."""
    return {k: report[k] for k in VIDEO_HEADLINE if k in report}
