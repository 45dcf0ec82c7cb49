"""In-domain measures of generated moving-digit clips: where the digit is in each frame, how well its track
follows the bouncing model the real clips obey, and whether the digit keeps its identity across frames.

Motion model (the one `elt.data.moving_digits` renders): along each axis the digit moves at a constant velocity
and reflects at the two ends of its allowed range, a range of known length (canvas - digit side) at an unknown
offset (where the digit's centroid sits inside its box). A track is fitted per axis by a grid search over
(offset, start, velocity) of the folded straight line, refined once on a finer grid around the best point; the
motion error is the root-mean-square residual of the best fit over both axes and all frames, in pixels.
"""
from __future__ import annotations

import numpy as np


def centroid_tracks(clips: np.ndarray) -> np.ndarray:
    """uint8 clips (N, T, H, W[, C]) -> intensity centroids (N, T, 2) as (y, x) in pixels; an empty frame's
    centroid is the canvas centre."""
    x = np.asarray(clips, dtype=np.float64)
    if x.ndim == 5:
        x = x.mean(-1)
    n, t, h, w = x.shape
    mass = x.sum((2, 3))  # (N, T)
    ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    cy = np.einsum("nthw,h->nt", x, ys)
    cx = np.einsum("nthw,w->nt", x, xs)
    empty = mass <= 1e-9
    safe = np.where(empty, 1.0, mass)
    cy = np.where(empty, (h - 1) / 2, cy / safe)
    cx = np.where(empty, (w - 1) / 2, cx / safe)
    return np.stack([cy, cx], axis=-1)


def fold(u: np.ndarray, low: np.ndarray, span: float) -> np.ndarray:
    """Reflect unbounded positions u into [low, low + span] (a bouncing point's position)."""
    if span <= 0:
        return np.broadcast_to(low, np.broadcast(u, low).shape).astype(np.float64)
    r = np.mod(u - low, 2 * span)
    return low + np.where(r > span, 2 * span - r, r)


def _grid_fit(track: np.ndarray, lows: np.ndarray, starts: np.ndarray, vels: np.ndarray, span: float):
    """track (N, T) -> best (sse (N,), low, start, vel) over the product grid, per track."""
    t = np.arange(track.shape[1], dtype=np.float64)
    lo, st, ve = np.meshgrid(lows, starts, vels, indexing="ij")
    lo, st, ve = lo.reshape(-1), st.reshape(-1), ve.reshape(-1)  # (K,)
    pred = fold(st[:, None] + ve[:, None] * t[None], lo[:, None], span)  # (K, T)
    # sse[n, k] = sum_t (track - pred)^2, expanded to keep memory at N×K
    sse = (track ** 2).sum(1)[:, None] - 2 * track @ pred.T + (pred ** 2).sum(1)[None]
    k = sse.argmin(1)
    return sse[np.arange(len(track)), k], lo[k], st[k], ve[k]


def fit_bounce(track: np.ndarray, span: float, extent: float, max_speed: float = 4.0, chunk: int = 64):
    """Least-squares bouncing fit of 1-D tracks (N, T) on a canvas side `extent` whose moving object has a
    range of length `span` -> (rms residual (N,), start velocity (N,)). Coarse grid then a finer one."""
    track = np.asarray(track, dtype=np.float64)
    rms, vel = np.empty(len(track)), np.empty(len(track))
    lows = np.linspace(0.0, max(extent - span, 0.0), 13)
    starts = np.linspace(0.0, extent, 33)
    vels = np.linspace(-max_speed, max_speed, 33)
    for a in range(0, len(track), chunk):
        part = track[a:a + chunk]
        sse, lo, st, ve = _grid_fit(part, lows, starts, vels, span)
        for i in range(len(part)):  # refine around each track's coarse optimum
            d_lo, d_st, d_ve = lows[1] - lows[0] if len(lows) > 1 else 0, starts[1] - starts[0], vels[1] - vels[0]
            fine = _grid_fit(part[i:i + 1], lo[i] + np.linspace(-d_lo, d_lo, 5), st[i] + np.linspace(-d_st, d_st, 9),
                             ve[i] + np.linspace(-d_ve, d_ve, 9), span)
            if fine[0][0] < sse[i]:
                sse[i], lo[i], st[i], ve[i] = (f[0] for f in fine)
        rms[a:a + chunk] = np.sqrt(np.maximum(sse, 0) / part.shape[1])
        # the folded line is symmetric under (start, v) -> (2·low - start, -v): read the direction of motion
        # off the fitted positions of the first two frames instead of the sign of v
        first = fold(st[:, None] + ve[:, None] * np.array([0.0, 1.0]), lo[:, None], span)  # (n, 2)
        vel[a:a + chunk] = np.sign(first[:, 1] - first[:, 0]) * np.abs(ve)
    return rms, vel


def motion_error(clips: np.ndarray, digit_size: int, max_speed: float = 4.0) -> dict:
    """Bouncing-model fit of every clip's centroid track -> {"motion_error_px": mean over clips of the RMS
    residual over both axes, "per_clip": (N,), "velocity": (N, 2) fitted start velocity (vy, vx)}."""
    tracks = centroid_tracks(clips)  # (N, T, 2)
    extent = float(np.asarray(clips).shape[2])
    span = extent - digit_size
    rms_y, vy = fit_bounce(tracks[..., 0], span, extent, max_speed)
    rms_x, vx = fit_bounce(tracks[..., 1], span, extent, max_speed)
    per_clip = np.sqrt((rms_y ** 2 + rms_x ** 2) / 2)
    return {"motion_error_px": float(per_clip.mean()), "per_clip": per_clip, "velocity": np.stack([vy, vx], 1)}


def frame_agreement(frame_preds: np.ndarray, digits: np.ndarray) -> dict:
    """Per-frame digit predictions (N, T) and each clip's digit (N,) -> class-consistency (fraction of frames
    showing the clip's digit) and identity persistence (fraction of frames agreeing with the clip's own
    majority prediction, whatever the label)."""
    frame_preds, digits = np.asarray(frame_preds), np.asarray(digits)
    consistency = float((frame_preds == digits[:, None]).mean())
    majority = np.array([np.bincount(row).argmax() for row in frame_preds])
    persistence = float((frame_preds == majority[:, None]).mean())
    return {"frame_class_consistency": consistency, "identity_persistence": persistence}
