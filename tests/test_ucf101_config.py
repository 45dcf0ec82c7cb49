"""configs/ucf101_masked.yaml runs end to end the way the paper's setting would: a UCF-101 root in the official
layout and a MAGVIT-style TorchScript 3-D tokenizer (16x128x128 clips -> 4x16x16 tokens of 1,024 codes),
here a tiny fake tree of clips and a pooling stand-in for the tokenizer, with the core shrunk to run in
seconds; nothing but the width, depth and step counts is overridden."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from elt.cli import main

pytest.importorskip("av")
from stand_ins import write_fake_ucf101  # noqa: E402

CONFIG = "configs/ucf101_masked.yaml"


class Magvit3DStandIn(nn.Module):
    """The interface a MAGVIT-style 3-D VQ must have: (B, 3, 16, 128, 128) in [-1, 1] <-> (B, 4, 16, 16)
    tokens of 1,024 codes (here the grey level of each 4x8x8 cell, quantised)."""

    def __init__(self):
        super().__init__()
        self.codebook_size = 1024
        self.token_grid: tuple[int, int, int] = (4, 16, 16)
        self.image_shape: tuple[int, int, int, int] = (3, 16, 128, 128)
        self.pool = nn.AvgPool3d((4, 8, 8))

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.pool(x.mean(1, keepdim=True))[:, 0] + 1) * 511.5).round().long().clamp(0, 1023)

    @torch.jit.export
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        v = (tokens.float() / 511.5 - 1)[:, None]  # (B, 1, 4, 16, 16)
        v = v.repeat_interleave(4, 2).repeat_interleave(8, 3).repeat_interleave(8, 4)
        return v.expand(-1, 3, -1, -1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory):
    """3 classes x 2 videos of 16 frames in the official layout, split 1 lists and classInd.txt."""
    return write_fake_ucf101(tmp_path_factory.mktemp("UCF101"), 16)


def test_ucf101_config_trains_and_samples_with_a_torchscript_3d_tokenizer(ucf_root, tmp_path):
    tok = tmp_path / "magvit.pt"
    torch.jit.save(torch.jit.script(Magvit3DStandIn()), str(tok))
    run = tmp_path / "run"
    small = ["model.dim=48", "model.heads=2", "model.blocks=1", "model.num_classes=3", "train.loops=2",
             "train.steps=2", "train.batch_size=2", "train.warmup_steps=1", "train.sample_every=0",
             "train.ckpt_every=2", "train.log_every=1"]
    assert main(["train", CONFIG, f"data.name={ucf_root}", f"tokenizer.path={tok}", *small, "--out", str(run),
                 "--no-progress"]) == 0
    assert (run / "tokenizer" / "tokenizer.pt").is_file()  # the run keeps its own copy of the tokenizer
    out = tmp_path / "clips.npz"
    assert main(["sample", str(run), "--per-class", "1", "--loops", "3", "--out", str(out)]) == 0
    clips = np.load(out)["arr_0"]
    assert clips.shape == (3, 16, 128, 128, 3) and clips.dtype == np.uint8  # N x T x H x W x C
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["loops"] == 3 and meta["steps"] == 12  # beyond L_max = 2; the config's 12 decoding steps
