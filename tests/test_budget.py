"""The compute budget: validation in one place, per-step schedules, guided calls at one or two budgets,
latents refused by models without a latent interface, and the SampleRequest sampler."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from elt.budget import Budget, BudgetError, BudgetSchedule, StepBudget
from elt.family.flow import FlowFamily
from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.models.masked import MaskedModelConfig, MaskedTransformer
from elt.nn.looped import check_loops
from elt.objectives.flow import ObjectiveConfig, RectifiedFlow
from elt.sampling.common import guided_call, loop_schedule, network_fn
from elt.sampling.flow import euler_sample, guided, sample_images
from elt.sampling.masked import DecodeSettings, sample_tokens
from elt.sampling.request import SampleRequest


# ---- Budget and schedules -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    ({"loops": 0}, "loops must be an integer >= 1, got 0"),
    ({"loops": -2}, "loops must be an integer >= 1, got -2"),
    ({"loops": True}, "loops must be an integer >= 1, got True"),
    ({"loops": 2.0}, "loops must be an integer >= 1, got 2.0"),
    ({"loops": "3"}, "loops must be an integer >= 1, got '3'"),
    ({"loops": 2, "latents": 0}, "latents must be an integer >= 1, got 0"),
    ({"loops": 2, "latents": False}, "latents must be an integer >= 1, got False"),
])
def test_budget_rejects_bad_values_with_a_clear_message(kwargs, match):
    with pytest.raises(BudgetError, match=match):
        Budget(**kwargs)


def test_budget_is_a_frozen_value():
    b = Budget(3, latents=16)
    assert b == Budget(3, 16) and b != Budget(3) and hash(b) == hash(Budget(3, 16))
    assert b.model_kwargs() == {"loops": 3, "latents": 16} and Budget(2).model_kwargs() == {"loops": 2}
    with pytest.raises(AttributeError):
        b.loops = 4


def test_the_other_loop_checks_use_budget():
    with pytest.raises(BudgetError, match="loops must be an integer >= 1, got 0"):
        check_loops(0)
    with pytest.raises(BudgetError, match="loops must be an integer >= 1, got 0"):
        loop_schedule([1, 0, 2], 3)
    with pytest.raises(BudgetError, match="per-step loop schedule needs 3 entries"):
        loop_schedule([1, 2], 3)
    assert loop_schedule(2, 3) == [2, 2, 2] and loop_schedule([1, 3, 2], 3) == [1, 3, 2]


def test_schedule_per_step_with_an_unconditional_budget():
    s = BudgetSchedule.of([1, 2, Budget(3)], 3, uncond=1)
    assert s.loops == [1, 2, 3] and len(s) == 3
    assert [st.uncond_budget.loops for st in s] == [1, 1, 1]
    assert [st.shared for st in s] == [True, False, False]
    assert BudgetSchedule.of(s, 3) is s
    with pytest.raises(BudgetError, match="budget schedule for 4 steps has 3 entries"):
        BudgetSchedule.of(s, 4)
    with pytest.raises(BudgetError, match="per-step unconditional loop schedule needs 3 entries"):
        BudgetSchedule.of(2, 3, uncond=[1, 1])
    with pytest.raises(BudgetError, match="steps must be an integer >= 1, got 0"):
        BudgetSchedule.of(2, 0)


# ---- guided calls ---------------------------------------------------------------------------------------------

class Counting:
    """fn(x, y, budget) = x·(loops + 10·[y is the null label]); records (batch, loops) per call."""

    def __init__(self, null: int = 9):
        self.null, self.calls = null, []

    def __call__(self, x, y, budget):
        self.calls.append((len(x), budget.loops))
        return x * (budget.loops + 10 * (y == self.null).float())[:, None]


def test_guided_call_is_one_batched_call_for_equal_budgets_and_two_for_different_ones():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
    for uncond in (None, Budget(2)):
        fn = Counting()
        out = guided_call(fn, (x,), y, Budget(2), uncond, 3.0, null_label=9)
        assert fn.calls == [(8, 2)]  # cond and uncond halves in one call
        torch.testing.assert_close(out, 12 * x + 3 * (2 * x - 12 * x), rtol=0, atol=0)
    fn = Counting()
    out = guided_call(fn, (x,), y, Budget(2), Budget(1), 3.0, null_label=9)
    assert fn.calls == [(4, 2), (4, 1)]  # conditional at 2 loops, unconditional at 1
    torch.testing.assert_close(out, 11 * x + 3 * (2 * x - 11 * x), rtol=0, atol=0)
    fn = Counting()
    guided_call(fn, (x,), y, Budget(2), Budget(1), 1.0, null_label=9)
    assert fn.calls == [(4, 2)]  # no guidance: no unconditional branch at all
    with pytest.raises(TypeError, match="guided_call takes Budgets"):
        guided_call(fn, (x,), y, 2, 3.0)  # the old (loops, cfg) positional form


class Recorder(nn.Module):
    """A flow model that records the (batch, loops) of every call."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []
        self.null_label, self.sample_shape = model.null_label, model.sample_shape

    def forward(self, x, t, y, loops):
        self.calls.append((len(x), loops))
        return self.model(x, t, y, loops=loops)


@pytest.fixture
def model(randomize):
    torch.manual_seed(0)
    m = FlowTransformer(FlowModelConfig(image_size=8, channels=1, patch=4, dim=32, heads=2, blocks=2, mlp_ratio=2.0,
                                       num_classes=3))
    return randomize(m, seed=1, std=0.1).eval()


def test_equal_budgets_reproduce_the_single_batched_guidance(model):
    x, t, y = torch.randn(3, 1, 8, 8), torch.full((3,), 0.4), torch.tensor([0, 1, 2])
    null = torch.full_like(y, model.null_label)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]), loops=2)  # the batched call
    c, u = both.chunk(2)
    want = u + 2.5 * (c - u)
    assert torch.equal(guided(model, x, t, y, 2, 2.5), want)
    assert torch.equal(guided(model, x, t, y, 2, 2.5, uncond=2), want)
    noise = torch.randn(3, 1, 8, 8)
    a = euler_sample(model, RectifiedFlow(ObjectiveConfig()), noise, y, loops=[1, 2], steps=2, cfg=2.0)
    b = euler_sample(model, RectifiedFlow(ObjectiveConfig()), noise, y, loops=[1, 2], steps=2, cfg=2.0,
                     uncond=[1, 2])
    assert torch.equal(a, b)


def test_cheap_guidance_runs_the_unconditional_branch_at_its_own_budget(model):
    rec = Recorder(model)
    y = torch.tensor([0, 1, 2])
    cheap = euler_sample(rec, RectifiedFlow(ObjectiveConfig()), torch.randn(3, 1, 8, 8), y, loops=3, steps=2,
                         cfg=2.0, uncond=1)
    assert rec.calls == [(3, 3), (3, 1)] * 2
    rec.calls.clear()
    euler_sample(rec, RectifiedFlow(ObjectiveConfig()), torch.randn(3, 1, 8, 8), y, loops=3, steps=2, cfg=2.0)
    assert rec.calls == [(6, 3)] * 2
    assert cheap.shape == (3, 1, 8, 8)


# ---- latents --------------------------------------------------------------------------------------------------

def test_models_without_a_latent_interface_refuse_latents(model):
    x, t, y = model.example_inputs(2)
    with pytest.raises(BudgetError, match="no latent interface.*latents=4"):
        model(x, t, y, loops=1, latents=4)
    with pytest.raises(BudgetError, match="no latent interface"):
        network_fn(model)(x, t, y, Budget(1, latents=4))
    with pytest.raises(BudgetError, match="no latent interface"):
        sample_images(model, RectifiedFlow(ObjectiveConfig()), torch.tensor([0]), Budget(2, latents=8), steps=1)
    masked = MaskedTransformer(MaskedModelConfig(grid=2, codebook_size=8, dim=32, heads=2, num_classes=3))
    with pytest.raises(BudgetError, match="no latent interface"):
        sample_tokens(masked, torch.tensor([0]), Budget(1, latents=2), DecodeSettings(steps=2))


# ---- SampleRequest --------------------------------------------------------------------------------------------

def test_sampler_takes_a_request_or_the_old_positional_call(model):
    family = FlowFamily(SimpleNamespace(objective=ObjectiveConfig()))
    sampler = family.sampler(model)
    labels = torch.tensor([0, 1, 2, 1])
    old = sampler(labels, 2, 3, 2.0, 7, 2, None, "fp32")
    new = sampler(SampleRequest(labels, loops=2, steps=3, guidance=2.0, seed=7, batch_size=2))
    assert old.shape == (4, 8, 8, 1) and torch.equal(old, new)
    cheap = sampler(SampleRequest(labels, loops=2, steps=3, guidance=2.0, uncond=1, seed=7))
    assert cheap.shape == old.shape and not torch.equal(cheap, old)
    with pytest.raises(TypeError, match="not both"):
        sampler(SampleRequest(labels, loops=2, steps=3), 2)


def test_step_budget_shared_flag():
    assert StepBudget(Budget(2)).shared and StepBudget(Budget(2), Budget(2)).shared
    assert not StepBudget(Budget(2), Budget(1)).shared
