"""Samplers: uint8 layout, determinism, batch-size independence, loop schedules, CFG, DDPM."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.objectives.flow import Diffusion, ObjectiveConfig, RectifiedFlow
from elt.sampling import ddpm_sample, euler_sample, guided, sample_images, to_uint8


def _tiny_model(randomize, channels: int, blocks: int, seed: int) -> FlowTransformer:
    torch.manual_seed(0)
    m = FlowTransformer(FlowModelConfig(image_size=8, channels=channels, patch=4, dim=32, heads=2, blocks=blocks,
                                        mlp_ratio=2.0, num_classes=3))
    return randomize(m, seed=seed, std=0.1).eval()


@pytest.fixture
def model(randomize):
    return _tiny_model(randomize, channels=1, blocks=2, seed=1)


@pytest.fixture
def rgb_model(randomize):
    return _tiny_model(randomize, channels=3, blocks=1, seed=2)


RF = RectifiedFlow(ObjectiveConfig())
DIFF = Diffusion(ObjectiveConfig(kind="diffusion"))
LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 2])


# ---- layout and determinism --------------------------------------------------------------------------------

@pytest.mark.parametrize("proc", [RF, DIFF], ids=["euler", "ddpm"])
def test_sample_images_uint8_nhwc(model, rgb_model, proc):
    out = sample_images(model, proc, LABELS, loops=2, steps=3, seed=0)
    assert out.dtype == torch.uint8 and out.shape == (7, 8, 8, 1) and out.device.type == "cpu"
    out = sample_images(rgb_model, proc, LABELS[:2], loops=1, steps=2, seed=0)
    assert out.dtype == torch.uint8 and out.shape == (2, 8, 8, 3)
    assert out.float().std() > 0  # not a constant image


@pytest.mark.parametrize("proc", [RF, DIFF], ids=["euler", "ddpm"])
def test_same_seed_same_images_other_seed_differs(model, proc):
    a = sample_images(model, proc, LABELS, loops=2, steps=3, seed=5)
    torch.manual_seed(123)  # the global RNG must not matter
    b = sample_images(model, proc, LABELS, loops=2, steps=3, seed=5)
    c = sample_images(model, proc, LABELS, loops=2, steps=3, seed=6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_euler_results_independent_of_batch_size(model):
    ref = sample_images(model, RF, LABELS, loops=2, steps=3, seed=3, batch_size=250)
    for bs in (1, 2, 3):
        out = sample_images(model, RF, LABELS, loops=2, steps=3, seed=3, batch_size=bs)
        diff = (out.int() - ref.int()).abs()
        # identical up to float summation order: at most one grey level, on a tiny fraction of pixels
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01, bs


def test_ddpm_results_independent_of_batch_size(model):
    ref = sample_images(model, DIFF, LABELS, loops=2, steps=4, seed=3, batch_size=250)
    out = sample_images(model, DIFF, LABELS, loops=2, steps=4, seed=3, batch_size=2)
    diff = (out.int() - ref.int()).abs()
    assert diff.max() <= 1


def test_sample_progress_counts_images(model):
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    sample_images(model, RF, LABELS, loops=1, steps=1, batch_size=3, progress=bar)
    assert bar.n == len(LABELS)


def test_to_uint8_range():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).view(1, 1, 1, 5)
    out = to_uint8(x)
    assert out.shape == (1, 1, 5, 1) and out.dtype == torch.uint8
    assert out.flatten().tolist()[:2] == [0, 0] and out.flatten().tolist()[3:] == [255, 255]
    assert out.flatten()[2] in (127, 128)


# ---- loop schedules -------------------------------------------------------------------------------------------

def test_per_step_loop_schedule(model):
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2])
    model.core.block_calls = 0
    a = euler_sample(model, RF, noise, y, loops=[1, 3, 2], steps=3)
    assert model.core.block_calls == 2 * (1 + 3 + 2)
    # a constant list equals the int
    torch.testing.assert_close(euler_sample(model, RF, noise, y, loops=[2, 2, 2], steps=3),
                               euler_sample(model, RF, noise, y, loops=2, steps=3), rtol=0, atol=0)
    assert not torch.allclose(a, euler_sample(model, RF, noise, y, loops=2, steps=3))


@pytest.mark.parametrize("sched", [[1, 2], [1, 2, 3, 4], []])
def test_wrong_schedule_length_raises(model, sched):
    with pytest.raises(ValueError, match="per-step loop schedule needs 3 entries"):
        sample_images(model, RF, LABELS, loops=sched, steps=3)
    with pytest.raises(ValueError, match="per-step loop schedule needs 3 entries"):
        sample_images(model, DIFF, LABELS, loops=sched, steps=3)


def test_bad_loop_count_in_sampler_raises(model):
    with pytest.raises(ValueError, match="loops must be an integer >= 1"):
        sample_images(model, RF, LABELS, loops=0, steps=2)
    with pytest.raises(ValueError, match="loops must be an integer >= 1"):
        sample_images(model, RF, LABELS, loops=[1, 0], steps=2)


# ---- classifier-free guidance ----------------------------------------------------------------------------------

def test_cfg_scale_one_is_the_conditional_prediction(model):
    g = torch.Generator().manual_seed(0)
    x, t, y = torch.randn(3, 1, 8, 8, generator=g), torch.rand(3, generator=g), torch.tensor([0, 1, 2])
    with torch.no_grad():
        cond = model(x, t, y, loops=2)
        uncond = model(x, t, torch.full_like(y, model.null_label), loops=2)
        torch.testing.assert_close(guided(model, x, t, y, 2, 1.0), cond, rtol=0, atol=0)
        torch.testing.assert_close(guided(model, x, t, y, 2, 0.0), uncond, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(guided(model, x, t, y, 2, 2.5), uncond + 2.5 * (cond - uncond),
                                   rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond, uncond)  # the label matters for this model


def test_cfg_changes_samples(model):
    a = sample_images(model, RF, LABELS, loops=2, steps=3, cfg=1.0, seed=0)
    b = sample_images(model, RF, LABELS, loops=2, steps=3, cfg=3.0, seed=0)
    assert not torch.equal(a, b)


# ---- sampler mathematics with an oracle model -----------------------------------------------------------------

class Oracle(nn.Module):
    """Knows the data point x0: predicts v = (x_t - x0)/t (rectified flow) or x0 itself (diffusion)."""

    def __init__(self, x0: torch.Tensor, kind: str):
        super().__init__()
        self.x0, self.kind = x0, kind
        self.dummy = nn.Parameter(torch.zeros(()))
        self.null_label = 3
        self.calls = []

    def forward(self, x, t, y, loops):
        self.calls.append(loops)
        if self.kind == "v":
            return (x - self.x0[: len(x)]) / t.view(-1, 1, 1, 1)
        return self.x0[: len(x)].expand_as(x)


def test_euler_follows_the_straight_path_to_the_data():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 1.6 - 0.8
    noise = torch.randn(4, 1, 8, 8, generator=g)
    oracle = Oracle(x0, "v")
    out = euler_sample(oracle, RF, noise, torch.zeros(4, dtype=torch.long), loops=[1, 2, 3, 4, 5], steps=5)
    torch.testing.assert_close(out, x0, rtol=1e-5, atol=1e-5)
    assert oracle.calls == [1, 2, 3, 4, 5]


def seeded_noise(seed: int, shape) -> callable:
    """A `step_noise` callable: the fresh noise of step i depends on (seed, i) only."""
    return lambda i: torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1000 + i))


def test_ddpm_with_oracle_shape_determinism_and_endpoint():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 1.6 - 0.8
    noise = torch.randn(4, 1, 8, 8, generator=g)
    y = torch.zeros(4, dtype=torch.long)
    oracle = Oracle(x0, "x0")
    a = ddpm_sample(oracle, DIFF, noise, y, loops=2, steps=6, step_noise=seeded_noise(1, noise.shape))
    b = ddpm_sample(oracle, DIFF, noise, y, loops=2, steps=6, step_noise=seeded_noise(1, noise.shape))
    assert a.shape == noise.shape and torch.equal(a, b)
    torch.testing.assert_close(a, x0)
    assert oracle.calls == [2] * 12


def test_ddpm_intermediate_states_are_finite_and_use_the_generator(model):
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2])
    a = ddpm_sample(model, DIFF, noise, y, loops=2, steps=5, step_noise=seeded_noise(1, noise.shape))
    b = ddpm_sample(model, DIFF, noise, y, loops=2, steps=5, step_noise=seeded_noise(2, noise.shape))
    assert torch.isfinite(a).all()
    assert not torch.equal(a, b)
