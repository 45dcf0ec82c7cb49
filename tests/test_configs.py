"""The shipped configs load, validate, and the ablation variants differ from the default in train.mode only."""
from pathlib import Path

import pytest

from elt.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GPU_CONFIGS = {"ucf101_masked.yaml", "moving_digits_m_flow.yaml"}  # no CPU budget: they need a GPU


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_config_loads(name):
    cfg = load_config(CONFIGS / name)
    if name in GPU_CONFIGS:
        assert cfg.train.max_minutes == 0 and cfg.train.steps >= 100_000
        return
    if name.startswith(("mnist_flow", "mnist_diffusion", "moving_digits")):
        assert 0 < cfg.train.max_minutes <= 15
    if name.startswith(("mnist_masked", "moving_digits_masked")):  # tokenizer + generator: at most 20 minutes
        assert cfg.tokenizer.max_minutes > 0 and cfg.train.max_minutes > 0
        assert cfg.tokenizer.max_minutes + cfg.train.max_minutes <= 20


@pytest.mark.parametrize("default,variant,mode", [("mnist_flow.yaml", "mnist_flow_vanilla.yaml", "vanilla"),
                                                  ("mnist_flow.yaml", "mnist_flow_baseline.yaml", "baseline"),
                                                  ("mnist_diffusion.yaml", "mnist_diffusion_vanilla.yaml", "vanilla"),
                                                  ("mnist_diffusion.yaml", "mnist_diffusion_baseline.yaml", "baseline"),
                                                  ("mnist_masked.yaml", "mnist_masked_vanilla.yaml", "vanilla"),
                                                  ("mnist_masked.yaml", "mnist_masked_baseline.yaml", "baseline"),
                                                  ("moving_digits_flow.yaml", "moving_digits_flow_vanilla.yaml",
                                                   "vanilla"),
                                                  ("moving_digits_masked.yaml", "moving_digits_masked_vanilla.yaml",
                                                   "vanilla")])
def test_ablation_differs_only_in_mode(default, variant, mode):
    base, other = load_config(CONFIGS / default), load_config(CONFIGS / variant)
    assert base.train.mode == "ilsd" and other.train.mode == mode
    other.train.mode = "ilsd"
    assert other == base


def test_masked_elit_is_the_masked_config_plus_the_latent_interface():
    """mnist_masked_elit.yaml: mnist_masked.yaml (same tokenizer, data, schedule) with one global 7×7 window of
    up to 16 latents (the 7×7 grid has a prime side) and a per-step latent draw; nothing else differs."""
    base, elit = load_config(CONFIGS / "mnist_masked.yaml"), load_config(CONFIGS / "mnist_masked_elit.yaml")
    assert base.model.latent is None and elit.latent_range == (1, 16)
    assert elit.model.latent.window == 7 and elit.model.token_grid == (7, 7)
    elit.model.latent, elit.train.min_latents = None, None
    assert elit == base


def test_flow_elit_configs_are_the_flow_config_plus_the_interface_and_their_one_axis_counterpart():
    """mnist_flow_elit.yaml = mnist_flow.yaml + the latent section (2×2 windows of the 4×4 grid, J 1..4) at the
    comparison's 1,400 steps; mnist_flow_elit_only.yaml differs from it in the core (8 blocks run once) alone."""
    base, elit = load_config(CONFIGS / "mnist_flow.yaml"), load_config(CONFIGS / "mnist_flow_elit.yaml")
    only = load_config(CONFIGS / "mnist_flow_elit_only.yaml")
    assert elit.latent_range == (1, 4) and elit.model.token_grid == (4, 4) and elit.train.steps == 1400
    assert (only.model.blocks, only.train.mode, only.train.loops) == (8, "vanilla", 1)
    only.model.blocks, only.train.mode, only.train.loops = 2, "ilsd", 4
    assert only == elit
    elit.model.latent, elit.train.min_latents, elit.train.steps = None, None, base.train.steps
    assert elit == base


def test_ucf101_config_is_the_papers_video_setting():
    """configs/ucf101_masked.yaml: ELT 6N×4L at width 1024 on 4×16×16 tokens of 16×128×128 clips, a 1,024-code
    tokenizer, 12 decoding steps, no guidance, 101 classes, ≈76M parameters (the paper's count for 6 MAGVIT
    layers at d = 1024: 6·12·d² plus embeddings and head)."""
    import torch

    from elt.models import build_model

    cfg = load_config(CONFIGS / "ucf101_masked.yaml")
    m = cfg.model
    assert (m.blocks, cfg.train.loops, m.dim, m.heads) == (6, 4, 1024, 16)
    assert (m.frames, m.image_size, m.channels) == (16, 128, 3) and m.token_grid == (4, 16, 16)
    assert m.codebook_size == cfg.tokenizer.codebook_size == 1024 and m.num_classes == 101
    assert (cfg.sample.steps, cfg.sample.cfg) == (12, 1.0)
    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(cfg).parameters())
    assert 75e6 < params < 80e6, params
