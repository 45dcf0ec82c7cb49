"""Named model sizes: every entry builds a valid config of its family, the MNIST sizes are the shipped configs'
architectures, keys given beside `model.size` win, and bad names list the choices."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from elt.config import ConfigError, config_from_dict, load_config
from elt.models import build_model
from elt.models.registry import MODEL_SIZES, model_size, size_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
IMAGENET_TOKENIZER = {"codebook_size": 1024, "downsample": 4}  # 256 px -> 16×16 tokens of 1024 codes


def _raw(name: str) -> dict:
    raw = {"family": MODEL_SIZES[name].family, "model": {"size": name}}
    if MODEL_SIZES[name].family == "masked" and MODEL_SIZES[name].model["image_size"] == 256:
        raw["tokenizer"] = dict(IMAGENET_TOKENIZER)
    if MODEL_SIZES[name].model.get("frames"):  # UCF-101: 16x128x128 -> 4x16x16 tokens
        raw["tokenizer"] = {"codebook_size": 1024, "downsample": 3, "time_downsample": 2}
    return raw


@pytest.mark.parametrize("name", list(MODEL_SIZES))
def test_every_size_is_a_valid_config_with_a_source(name):
    entry = MODEL_SIZES[name]
    cfg = config_from_dict(_raw(name))
    assert cfg.family == entry.family and cfg.train.loops == entry.loops
    assert {k: getattr(cfg.model, k) for k in entry.model} == entry.model
    n, l_max = name.rsplit("-", 1)[1].split("x")  # the name's N×L split is the entry's
    assert (cfg.model.blocks, cfg.train.loops) == (int(n), int(l_max))
    assert entry.source


@pytest.mark.parametrize("name,config", [("ELT-MNIST/7-2x4", "mnist_flow.yaml"),
                                         ("ELT-MNIST/7-2x4", "mnist_diffusion.yaml"),
                                         ("ELT-MNIST-d384/7-4x4", "bench_d384.yaml"),
                                         ("ELT-MaskGIT-MNIST-2x4", "mnist_masked.yaml")])
def test_mnist_sizes_are_the_shipped_architectures(name, config):
    raw = yaml.safe_load((CONFIGS / config).read_text())
    raw["model"] = {"size": name}
    del raw["train"]["loops"]
    assert config_from_dict(raw) == load_config(CONFIGS / config)


def test_keys_beside_the_size_win():
    cfg = config_from_dict({"model": {"size": "ELT-MNIST/7-2x4", "dim": 128}, "train": {"loops": 3}})
    assert (cfg.model.dim, cfg.model.patch, cfg.train.loops) == (128, 7, 3)


def test_cli_overrides_replace_the_file_architecture():
    cfg = load_config(CONFIGS / "bench_d384.yaml", size_overrides("ELT-MNIST/7-2x4") + ["model.heads=8"])
    assert (cfg.model.dim, cfg.model.blocks, cfg.model.heads) == (256, 2, 8)


def test_small_paper_size_builds():
    """The smallest paper entry builds a network with the named width and unique blocks."""
    cfg = config_from_dict(_raw("ELT-MaskGIT-B-6x2"))
    model = build_model(cfg)
    assert len(model.core.blocks) == 6 and model.cfg.dim == 768


def test_unknown_size_lists_the_choices():
    with pytest.raises(ConfigError, match="unknown model size 'ELT-XL': choose one of ELT-MNIST/7-2x4, "):
        model_size("ELT-XL")


def _params(name: str) -> int:
    import torch

    with torch.device("meta"):
        return sum(p.numel() for p in build_model(config_from_dict(_raw(name))).parameters())


@pytest.mark.parametrize("name", ["ELT-DiT/2-4x8", "ELT-DiT/2-8x4", "ELT-DiT/2-16x2", "DiT/2-32x1"])
def test_dit_sizes_have_the_papers_parameter_counts(name):
    """Within 3% of the paper's Table 2 (d = 1920 is inferred: the paper's Table 7 is not available)."""
    assert _params(name) == pytest.approx(MODEL_SIZES[name].paper_params, rel=0.03)


def test_the_1x32_gap_is_outside_the_blocks():
    """1N x 32L is 16% above the paper's 69M, but its blocks are the paper's: per block this DiT has the 67.0M
    that the paper's 4N and 8N counts imply (within 3%); the rest (timestep MLP, final adaLN, embedders) is
    what differs, and only 1N makes it visible."""
    per_block = (_params("ELT-DiT/2-8x4") - _params("ELT-DiT/2-4x8")) / 4
    assert per_block == pytest.approx((539e6 - 271e6) / 4, rel=0.03)
    assert _params("ELT-DiT/2-1x32") == pytest.approx(69e6, rel=0.17)


@pytest.mark.parametrize("name", ["ELT-MaskGIT-L-8x3", "ELT-MaskGIT-L-12x2", "ELT-MaskGIT-XL-7x4",
                                  "ELT-MAGVIT-UCF101-6x4"])
def test_masked_sizes_match_the_inferred_counts(name):
    """Class-token models with MaskGIT's 12·d² per block: within 5% of 12·d²·N (the paper states none of these;
    the embeddings and the output layer make the rest)."""
    assert _params(name) == pytest.approx(MODEL_SIZES[name].paper_params, rel=0.05)


def test_the_d32_dit_splits_cost_the_same_per_forward():
    """The paper's iso-compute design: every N x L with N·L = 32 costs the same forward FLOPs (within 0.5%;
    the counted ops differ only in how often the output layer's input is read)."""
    import torch

    from elt.bench.flops import count_flops

    flops = []
    for name in ("ELT-DiT/2-1x32", "ELT-DiT/2-8x4", "DiT/2-32x1"):
        cfg = config_from_dict(_raw(name))
        with torch.device("meta"):
            model = build_model(cfg)
            flops.append(count_flops(lambda: model(*model.example_inputs(1), loops=cfg.train.loops))[0])
    assert max(flops) / min(flops) < 1.005 and 700e9 < flops[0] < 800e9
