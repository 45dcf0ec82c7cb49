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
