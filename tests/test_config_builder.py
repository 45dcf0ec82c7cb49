"""The config builder reads section and value types from the dataclasses' type hints: optional and
family-chosen sections are parsed and checked like the others, integer tuples stay integers, and the dumped
config of every shipped YAML reloads to the same config."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from elt.config import (Config, ConfigError, MaskedSampleConfig, SampleConfig, config_from_dict, dump_config,
                        load_config)
from elt.schema import build
from elt.tokenizers.config import TokenizerConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class Inner:
    size: tuple[int, ...] = (4, 4)
    rate: float = 0.5


@dataclass
class Outer:
    shape: tuple[int, int] = (8, 8)
    betas: tuple[float, float] = (0.9, 0.99)
    patch: int | tuple[int, ...] = 2
    name: str | None = None
    inner: Inner | None = None  # an optional section: absent unless given
    always: Inner = field(default_factory=Inner)


def _build(values: dict) -> Outer:
    return build(Outer, values, "", ConfigError)


def test_integer_tuples_stay_integers_and_float_tuples_become_floats():
    o = _build({"shape": [16, 32], "betas": [1, 0.5], "patch": [2, 4, 1]})
    assert o.shape == (16, 32) and all(type(v) is int for v in o.shape)
    assert o.betas == (1.0, 0.5) and all(type(v) is float for v in o.betas)
    assert o.patch == (2, 4, 1) and all(type(v) is int for v in o.patch)
    assert _build({"patch": 3}).patch == 3


@pytest.mark.parametrize("values,message", [
    ({"shape": [16, 2.5]}, "shape must be a list of 2 integers, got [16, 2.5]"),
    ({"shape": [16]}, "shape must be a list of 2 integers"),
    ({"betas": [0.9, "x"]}, "betas must be a list of 2 numbers"),
    ({"patch": 2.5}, "patch must be an integer or a list of integers, got 2.5"),
    ({"patch": [2, True]}, "patch must be an integer or a list of integers"),
    ({"name": 3}, "name must be a string, got 3"),
    ({"inner": {"sise": [2]}}, "unknown config key 'inner.sise': did you mean 'size'?"),
    ({"inner": {"size": ["a"]}}, "inner.size must be a list of integers"),
    ({"inner": 5}, "inner must be a mapping, got int"),
    ({"always": {"rate": "fast"}}, "always.rate must be a number, got 'fast'"),
])
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError) as e:
        _build(values)
    assert str(e.value).startswith(message)


def test_optional_section_is_parsed_when_given():
    assert _build({}).inner is None and _build({"inner": None}).inner is None
    o = _build({"inner": {"size": [1, 2, 3], "rate": "1e-3"}})
    assert o.inner == Inner((1, 2, 3), 0.001)


def test_sample_and_tokenizer_sections_follow_the_family():
    flow = config_from_dict({"family": "flow"})
    assert type(flow.sample) is SampleConfig and flow.tokenizer is None
    assert set(flow.to_dict()) == {"family", "model", "objective", "data", "train", "sample"}
    assert list(flow.to_dict()["sample"]) == ["steps", "cfg"]
    masked = load_config(CONFIGS / "mnist_masked.yaml")
    assert type(masked.sample) is MaskedSampleConfig and type(masked.tokenizer) is TokenizerConfig
    assert list(masked.to_dict()["sample"]) == ["steps", "cfg", "temp_bias", "temp_scale", "choice_temperature"]
    assert "tokenizer" in masked.to_dict()


def test_a_section_of_the_wrong_family_is_refused():
    cfg = config_from_dict({"family": "flow"})
    cfg.sample = MaskedSampleConfig()
    with pytest.raises(ConfigError, match="family 'flow' needs .*sample: SampleConfig.*wrong: sample"):
        cfg.validate()
    cfg = Config(family="flow", tokenizer=TokenizerConfig())
    with pytest.raises(ConfigError, match="wrong: tokenizer"):
        cfg.validate()


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_dumped_config_reloads_identically(name, tmp_path):
    """A checkpoint's config.yaml is `dump_config`: it must load back to the same config and dump the same."""
    cfg = load_config(CONFIGS / name)
    text = dump_config(cfg)
    (tmp_path / "config.yaml").write_text(text)
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg and dump_config(again) == text
    assert yaml.safe_load(text)["train"]["betas"] == list(cfg.train.betas)
