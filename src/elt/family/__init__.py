"""What differs between the two model families, behind one small interface the trainer and CLI use.

A family turns data into training inputs (`batch`), runs the network at the requested loop exits
(`forward`), scores predictions (`gt_loss`, `dist_loss` for ILSD) and builds a sampler for a trained model.
"""
from __future__ import annotations

from .flow import FlowFamily
from .masked import MaskedFamily


def build_family(cfg):
    """The family object of a config: FlowFamily or MaskedFamily."""
    return MaskedFamily(cfg) if cfg.family == "masked" else FlowFamily(cfg)


__all__ = ["FlowFamily", "MaskedFamily", "build_family"]
