"""The masked family on clips: the quantizer on a 3-D token grid (t, h, w)."""

import torch

from elt.tokenizers.quantizer import VectorQuantizer


def _quantizer(seed: int = 0) -> VectorQuantizer:
    torch.manual_seed(seed)
    return VectorQuantizer(num_codes=16, code_dim=4)


def test_quantizer_on_3d_grid_equals_the_same_vectors_laid_out_2d():
    # z3: (B, D, t, h, w); the same vectors as an image grid (B, D, t*h, w) keep raster order (t slowest)
    torch.manual_seed(1)
    z3 = torch.randn(2, 4, 3, 5, 6)
    z2 = z3.reshape(2, 4, 3 * 5, 6)
    q3, q2 = _quantizer(), _quantizer()
    torch.manual_seed(2)  # dead-code restarts draw from the global generator: same draws for both layouts
    out3, idx3, commit3, stats3 = q3(z3, update=True)
    torch.manual_seed(2)
    out2, idx2, commit2, stats2 = q2(z2, update=True)
    assert idx3.shape == (2, 3, 5, 6) and out3.shape == z3.shape
    assert torch.equal(idx3.reshape(2, 15, 6), idx2)
    assert torch.allclose(out3.reshape(2, 4, 15, 6), out2)
    assert torch.allclose(commit3, commit2)
    assert stats3 == stats2
    assert torch.allclose(q3.codebook, q2.codebook)  # the EMA update saw the same vectors
    assert torch.allclose(q3.lookup(idx3).reshape(2, 4, 15, 6), q2.lookup(idx2))


def test_quantizer_3d_indices_are_raster_order_t_slowest():
    # each vector equals one code; its index must come back at the same (t, h, w) place
    q = _quantizer()
    idx = torch.randint(0, 16, (1, 2, 3, 4))  # (B, t, h, w)
    z = q.lookup(idx)  # (B, D, t, h, w)
    assert z.shape == (1, 4, 2, 3, 4)
    _, got, _, _ = q(z, update=False)
    assert torch.equal(got, idx)


# ---- the 3-D tokenizer, the clip model and the CLI path -----------------------------------------------------------
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from elt.data.dataset import ArrayImageDataset  # noqa: E402
from elt.models.masked import MaskedModelConfig, MaskedTransformer  # noqa: E402
from elt.nn.embed import sincos_at  # noqa: E402
from elt.tokenizers.autoencoder import VQAutoencoder  # noqa: E402
from elt.tokenizers.config import TokenizerConfig  # noqa: E402


@pytest.mark.parametrize("down,time_down,grid", [(2, 0, (8, 8, 8)), (2, 1, (4, 8, 8)), (3, 1, (4, 4, 4)),
                                                 (3, 3, (1, 4, 4))])
def test_the_clip_tokenizer_halves_time_in_exactly_time_downsample_stages(down, time_down, grid):
    """8x32x32 clips -> (8 / 2**time_downsample, 32 / 2**downsample, ...) and back to the clip shape (planted:
    every stage striding time gives t = 1 for any time_downsample; the decoder upsampling time in the wrong
    number of stages returns the wrong frame count)."""
    tok = VQAutoencoder(TokenizerConfig(base_channels=4, downsample=down, time_downsample=time_down, res_blocks=0,
                                        codebook_size=16, code_dim=4), (1, 8, 32, 32))
    x = torch.rand(2, 1, 8, 32, 32) * 2 - 1
    tokens = tok.encode_unit(x)
    assert tok.token_grid == grid and tuple(tokens.shape) == (2, *grid)
    assert tuple(tok.decode(tokens).shape) == (2, 1, 8, 32, 32)


def test_an_image_tokenizer_keeps_its_2d_layers():
    tok = VQAutoencoder(TokenizerConfig(base_channels=4, downsample=2, codebook_size=16, code_dim=4), (1, 28, 28))
    assert tok.token_grid == (7, 7) and isinstance(tok.encoder.net[0], torch.nn.Conv2d)


def test_clip_model_positions_follow_the_tokenizers_raster_order():
    """Token i of a (t, h, w) grid sits at (i // (h·w), i // w % h, i % w): the model's position row i is the
    sin-cos of that coordinate (planted: a grid listed as (h, w, t) fails)."""
    cfg = MaskedModelConfig(image_size=32, channels=1, frames=8, time_grid=2, codebook_size=16, grid=4, dim=24,
                            heads=2, blocks=1)
    model = MaskedTransformer(cfg)
    assert cfg.token_grid == (2, 4, 4) and cfg.input_shape == (1, 8, 32, 32)
    coords = torch.tensor([[i // 16, i // 4 % 4, i % 4] for i in range(32)], dtype=torch.float64)
    assert torch.allclose(model.pos[0], sincos_at(24, coords).float(), atol=1e-6)
    logits = model(torch.randint(0, 16, (2, 32)), torch.tensor([0, 1]), 1)
    assert tuple(logits.shape) == (2, 32, 16)


def _stand_in(monkeypatch, tmp_path):
    images = np.zeros((20, 28, 28), np.uint8)
    for i in range(20):
        images[i, 6:22, 8:10 + i % 10] = 255
    monkeypatch.setattr("elt.data.load_mnist", lambda split, cache_dir=None, download=True: ArrayImageDataset(
        images[:, None], np.arange(20) % 10, [str(d) for d in range(10)]))
    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))


def test_a_masked_clip_run_trains_and_samples_clips_from_the_cli(tiny_cfg_dict, tmp_path, monkeypatch):
    from elt.cli import main

    _stand_in(monkeypatch, tmp_path)
    d = yaml.safe_load(open("configs/moving_digits_masked.yaml"))
    d["tokenizer"] |= {"path": str(tmp_path / "tok"), "steps": 2, "base_channels": 4, "batch_size": 4}
    d["model"] |= {"dim": 24, "heads": 2, "blocks": 1}
    d["train"] |= {"steps": 2, "batch_size": 4, "max_minutes": 0}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d))
    assert main(["tokenizer", "train", str(tmp_path / "c.yaml"), "--no-progress"]) == 0
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert main(["sample", str(tmp_path / "run"), "--labels", "3", "4", "--steps", "2",
                 "--out", str(tmp_path / "s.npz")]) == 0
    clips = np.load(tmp_path / "s.npz")["arr_0"]
    assert clips.shape == (2, 8, 32, 32, 1) and clips.dtype == np.uint8  # N, T, H, W, C


def test_a_masked_clip_run_trains_on_a_video_folder_with_its_data_keys(tmp_path):
    """The clip keys (data.frames, ...) reach the tokenizer's own training as they reach the generator's
    (planted: tokenizer training opening the data without them fails: "holds videos: set data.frames"), and
    `elt tokenizer eval` reopens the clips the tokenizer was trained on."""
    pytest.importorskip("av")
    from elt.cli import main
    from stand_ins import write_video

    for c in ("a", "b"):
        write_video(tmp_path / "vids" / "train" / c / "v.avi", 10, 32, 32)
        write_video(tmp_path / "vids" / "test" / c / "v.avi", 10, 32, 32)
    d = yaml.safe_load(open("configs/moving_digits_masked.yaml"))
    d["data"] = {"name": str(tmp_path / "vids"), "frames": 8, "image_size": 32, "channels": 1}
    d["tokenizer"] |= {"path": str(tmp_path / "tok"), "steps": 2, "base_channels": 4, "batch_size": 2}
    d["model"] |= {"dim": 24, "heads": 2, "blocks": 1, "num_classes": 2}
    d["train"] |= {"steps": 1, "batch_size": 2, "max_minutes": 0}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert main(["tokenizer", "eval", str(tmp_path / "tok")]) == 0
