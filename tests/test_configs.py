"""The shipped configs load, validate, and the ablation variants differ from the default in train.mode only."""
from pathlib import Path

import pytest

from elt.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_config_loads(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.train.max_minutes <= 15 or "mnist_flow" not in name


@pytest.mark.parametrize("variant,mode", [("mnist_flow_vanilla.yaml", "vanilla"),
                                          ("mnist_flow_baseline.yaml", "baseline")])
def test_ablation_differs_only_in_mode(variant, mode):
    base, other = load_config(CONFIGS / "mnist_flow.yaml"), load_config(CONFIGS / variant)
    assert base.train.mode == "ilsd" and other.train.mode == mode
    other.train.mode = "ilsd"
    assert other == base
