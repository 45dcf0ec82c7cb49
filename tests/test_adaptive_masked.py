"""The masked family's adaptive loops (`--halt kl:τ`): a sample's guided logits are the fixed-L ones at the loops
it used, whatever shares its batch; a decoded sample equals the fixed per-step schedule of its own exits."""
from __future__ import annotations

import pytest
import torch

from conftest import randomize_
from elt.budget import Budget
from elt.models.masked import MaskedModelConfig, MaskedTransformer
from elt.sampling.adaptive import HaltRule, adaptive_predict
from elt.sampling.common import guided_call, network_fn
from elt.sampling.masked import DecodeSettings, sample_tokens

CLOSE = {"rtol": 1e-4, "atol": 1e-5}  # float rounding of other batch sizes


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(MaskedTransformer(MaskedModelConfig(codebook_size=8, grid=3, dim=32, heads=2, blocks=2,
                                                          num_classes=3)), std=0.15).eval()


def _tokens(n: int):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 9, (n, 9), generator=g), torch.arange(n) % 3  # id 8 is [MASK]


@pytest.mark.parametrize("kind,tau,cfg", [("kl", 0.01, 2.0), ("kl", 0.03, 1.0), ("latent", 0.5, 2.0)])
def test_each_sample_equals_the_fixed_logits_at_its_loops(model, kind, tau, cfg):
    tokens, y = _tokens(8)
    logits, used = adaptive_predict(model, (tokens,), y, HaltRule(kind, tau, 5), cfg)
    assert len(set(used.tolist())) > 1, used
    for b in range(8):
        fixed = guided_call(network_fn(model), (tokens[b:b + 1],), y[b:b + 1], Budget(int(used[b])), None, cfg,
                            null_label=model.null_label, upcast=True)
        torch.testing.assert_close(logits[b:b + 1], fixed, **CLOSE)
    order = torch.tensor([5, 1, 7])
    logits2, used2 = adaptive_predict(model, (tokens[order],), y[order], HaltRule(kind, tau, 5), cfg)
    assert torch.equal(used2, used[order])
    torch.testing.assert_close(logits2, logits[order], **CLOSE)


def test_a_decoded_sample_equals_the_fixed_schedule_of_its_exits(model):
    labels = torch.tensor([0, 1, 2, 0, 1])
    settings = DecodeSettings(steps=4, cfg=2.0)
    trace = []
    tokens = sample_tokens(model, labels, 4, settings, seed=2, batch_size=5, halt=HaltRule("kl", 0.02, 4),
                           trace=trace)
    loops = torch.cat(trace, 1)  # (steps, N)
    assert loops.shape == (4, 5) and len(set(loops.flatten().tolist())) > 1
    for b in range(5):
        alone = sample_tokens(model, labels[b:b + 1], loops[:, b].tolist(), settings, seed=2, batch_size=1,
                              first_index=b)
        assert torch.equal(alone[0], tokens[b]), b
    assert sample_tokens(model, labels, 4, settings, seed=2, halt=HaltRule("kl", 0.0, 4), trace=(t0 := [])) \
        .shape == (5, 3, 3) and torch.cat(t0, 1).eq(4).all()  # τ = 0: every call at the cap


def test_the_kl_rule_reads_only_the_masked_positions():
    """KL(p_ℓ ‖ p_ℓ−1) averaged over the positions still masked: by hand on two positions, one masked."""
    import math

    from elt.sampling.adaptive import _masked_kl

    new = torch.tensor([[[0.0, math.log(3.0)], [5.0, 0.0]]])  # p = (1/4, 3/4) at the masked position
    old = torch.tensor([[[0.0, 0.0], [0.0, 5.0]]])  # q = (1/2, 1/2); position 2 differs but is decided
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert _masked_kl(new, old, torch.tensor([[True, False]])).item() == pytest.approx(kl, rel=1e-6)
    assert _masked_kl(new, old, torch.tensor([[False, False]])).item() == 0.0  # nothing left to decide
