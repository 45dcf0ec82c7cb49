"""Small stand-ins shared by several test files (imported as `from stand_ins import ...`)."""
from __future__ import annotations

import torch
from torch import nn


class StandIn(nn.Module):
    """A user's TorchScript tokenizer: 1x4x4 grey images in [-1, 1] <-> 2x2 grids of 16 tokens."""

    def __init__(self):
        super().__init__()
        self.codebook_size = 16
        self.token_grid: tuple[int, int] = (2, 2)
        self.image_shape: tuple[int, int, int] = (1, 4, 4)
        self.pool = nn.AvgPool2d(2)

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 4, 4) in [-1, 1] -> (B, 2, 2) int64 in 0..15."""
        return ((self.pool(x)[:, 0] + 1) * 7.5).round().long().clamp(0, 15)

    @torch.jit.export
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 2, 2) int64 -> (B, 1, 4, 4) float in [-1, 1]."""
        v = tokens.float() / 7.5 - 1
        return v[:, None].repeat_interleave(2, 2).repeat_interleave(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)


def load_truncated(big: nn.Module, small: nn.Module, latents: int) -> nn.Module:
    """`small` (a model built with `latents` latents per group) with every weight of `big` (a model with a
    latent interface), its Read queries cut to the first `latents`: what `big` at latents=J must equal."""
    state = big.state_dict()
    key = "latent.interface.read_layer.queries"  # (J_max, D) -> (J, D)
    state[key] = state[key][:latents].clone()
    small.load_state_dict(state)
    return small


def bar_digits(n: int = 40):
    """Stand-in MNIST digits (n, 28, 28) uint8 and labels (n,): a bright bar whose width encodes the label."""
    import numpy as np

    labels = np.arange(n) % 10
    images = np.zeros((n, 28, 28), np.uint8)
    for i, y in enumerate(labels):
        images[i, 8:20, 10:12 + y] = 255
    return images, labels


LEVEL = 20  # write_video paints frame t at brightness LEVEL·t


def write_video(path, frames: int, h: int = 24, w: int = 32):
    """An mpeg4 video of `frames` grey-level frames (frame t has value LEVEL·t mod 256) with a white top-left 8x8
    square
    (PyAV, the `video` extra)."""
    from pathlib import Path

    import av
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qscale": "1"}
        for t in range(frames):
            img = np.full((h, w, 3), LEVEL * t % 256, np.uint8)
            img[:8, :8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


UCF_CLASSES = ("ApplyEyeMakeup", "Biking", "Diving")


def write_fake_ucf101(root, frames: int):
    """A UCF-101 root in the official layout: 3 classes x 2 videos of `frames` frames (group 1 in the train
    list of split 1, group 2 in its test list), classInd.txt (PyAV, the `video` extra)."""
    from pathlib import Path

    root = Path(root)
    train, test = [], []
    for c in UCF_CLASSES:
        for g in (1, 2):
            name = f"{c}/v_{c}_g0{g}_c01.avi"
            write_video(root / "UCF-101" / name, frames)
            (train if g == 1 else test).append(name)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{k + 1} {c}\n" for k, c in enumerate(UCF_CLASSES)))
    (lists / "trainlist01.txt").write_text("".join(f"{n} {UCF_CLASSES.index(n.split('/')[0]) + 1}\n" for n in train))
    (lists / "testlist01.txt").write_text("".join(f"{n}\n" for n in test))
    return root
