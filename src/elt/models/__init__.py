"""Model construction from a Config, and loading trained runs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .flow import FlowModelConfig, FlowTransformer
from .masked import MaskedModelConfig, MaskedTransformer


def build_model(cfg) -> FlowTransformer | MaskedTransformer:
    """The network a config trains: N unique blocks (N·L for the `baseline` mode)."""
    arch = dataclasses.replace(cfg.model, blocks=cfg.model_blocks)
    return MaskedTransformer(arch) if cfg.family == "masked" else FlowTransformer(arch)


def from_pretrained(path: str | Path, device: str = "cpu"):
    """Load a run folder or checkpoint folder -> (model with EMA weights, eval mode; its Config)."""
    from ..checkpoint import find_checkpoint, load_config_from, load_ema_weights, load_weights

    ckpt = find_checkpoint(path)
    cfg = load_config_from(ckpt)
    model = build_model(cfg)
    load_weights(model, load_ema_weights(ckpt), str(ckpt))
    return model.to(device).eval(), cfg


__all__ = ["FlowModelConfig", "FlowTransformer", "MaskedModelConfig", "MaskedTransformer", "build_model",
           "from_pretrained"]
