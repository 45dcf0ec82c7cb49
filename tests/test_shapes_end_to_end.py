"""The geometry and codec boundaries are real: a clip-shaped flow model (T = 4) and a 4-channel latent-shaped
one train with the ordinary Trainer on code folders and sample through the family's Sampler."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from elt.data import write_codes
from elt.sampling.request import SampleRequest
from elt.train import Trainer


def code_folder(path, shape, n: int = 24, classes: int = 2, seed: int = 0):
    """Float32 codes (n, *shape) in [-1, 1] whose mean depends on the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    codes = np.tanh(rng.normal(0, 0.5, size=(n, *shape)) + (labels * 1.0 - 0.5).reshape(-1, *[1] * len(shape)))
    return write_codes(path, codes.astype(np.float32), labels, ["a", "b"], kind="latents", source="test",
                       codec="none")


@pytest.mark.parametrize("shape,model_keys,tokens", [
    ((1, 4, 8, 8), ["model.channels=1", "model.image_size=8", "model.frames=4", "model.frame_patch=2",
                    "model.patch=4", "model.dim=48"], 2 * 2 * 2),  # a clip: T = 4 frames of 8×8
    ((4, 8, 8), ["model.channels=4", "model.image_size=8", "model.patch=4"], 2 * 2),  # VAE-latent shaped
], ids=["clip_T4", "latent_4ch"])
def test_train_and_sample_a_non_image_shape(shape, model_keys, tokens, tmp_path, make_config):
    folder = code_folder(tmp_path / "codes", shape)
    cfg = make_config(f"data.name={folder}", "data.image_size=null", "data.channels=null", "model.num_classes=2",
                      "train.steps=3", "train.ckpt_every=3", "train.log_every=1", *model_keys)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    summary = trainer.fit()
    trainer.close()
    assert summary["step"] == 3 and np.isfinite(summary["loss"])
    assert not (tmp_path / "run" / "samples").exists()  # no pixel grid drawn from clips or latents

    model = trainer.ema.model.eval()
    assert model.sample_shape == shape and model.cfg.num_tokens == tokens
    x = torch.randn(2, *shape)
    outs = model(x, torch.full((2,), 0.5), torch.tensor([0, 1]), loops=cfg.train_loops, exits=(1, cfg.train_loops))
    assert [o.shape for o in outs] == [(2, *shape)] * 2 and not torch.equal(outs[0], outs[1])

    sampler = trainer.family.sampler(model, tmp_path / "run")
    for loops in (1, cfg.train_loops):
        out = sampler(SampleRequest(torch.tensor([0, 1, 1]), loops, steps=2, guidance=2.0, seed=1))
        channels_last = (*shape[1:], shape[0])
        assert out.dtype == torch.uint8 and out.shape == (3, *channels_last)
    again = sampler(SampleRequest(torch.tensor([0, 1, 1]), cfg.train_loops, steps=2, guidance=2.0, seed=1))
    assert torch.equal(out, again)  # a function of (seed, index)
