"""Checkpoints written before the latent interface existed (tests/fixtures/checkpoints_v1: a tiny ELT-DiT and
a tiny ELT-MaskGIT, their config.yaml and EMA weights as the library wrote them then, with the outputs that
library computed on fixed inputs) load strictly and give the same outputs at every loop exit."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from elt.models import from_pretrained

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints_v1"


@pytest.mark.parametrize("family", ["flow", "masked"])
def test_an_old_checkpoint_loads_strictly_and_computes_what_it_did(family):
    model, cfg = from_pretrained(FIXTURES / family)
    assert cfg.family == family and getattr(cfg.model, "latent", None) is None
    assert not hasattr(model, "latent")  # no interface, no new keys: the strict load above saw every key
    want = load_file(str(FIXTURES / family / "expected.safetensors"))
    inputs = (want["x"], want["t"]) if family == "flow" else (want["tokens"],)
    with torch.no_grad():
        outs = model(*inputs, want["y"], 3, exits=(1, 2, 3))
    for L, out in enumerate(outs, start=1):
        torch.testing.assert_close(out, want[f"out_L{L}"], rtol=1e-5, atol=1e-5)
