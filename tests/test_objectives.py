"""Training processes: rectified flow and x0-diffusion inputs, schedules, weights, and that they train."""
from __future__ import annotations

import math

import pytest
import torch

from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.objectives.flow import Diffusion, ObjectiveConfig, RectifiedFlow, build_objective


def _draws(b: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(b, 1, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(b, 1, 8, 8, generator=g)
    u = torch.randn(b, generator=g) * 2
    return x0, noise, u


# ---- rectified flow ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t_mean,t_std", [(0.0, 1.0), (-0.5, 0.7)])
def test_rectified_flow_inputs(t_mean, t_std):
    proc = build_objective(ObjectiveConfig(kind="rectified_flow", t_mean=t_mean, t_std=t_std))
    assert isinstance(proc, RectifiedFlow)
    x0, noise, u = _draws()
    x_t, t, target, weight = proc.training_inputs(x0, noise, u)
    torch.testing.assert_close(t, torch.sigmoid(t_mean + t_std * u))
    assert ((t > 0) & (t < 1)).all()
    tt = t.view(-1, 1, 1, 1)
    torch.testing.assert_close(x_t, (1 - tt) * x0 + tt * noise)
    torch.testing.assert_close(target, noise - x0)
    assert torch.equal(weight, torch.ones(len(u)))


def test_rectified_flow_endpoints():
    proc = RectifiedFlow(ObjectiveConfig())
    x0, noise, _ = _draws()
    # u -> ±inf gives t -> 1 (pure noise) / 0 (data)
    x_t, t, _, _ = proc.training_inputs(x0, noise, torch.full((6,), 50.0))
    torch.testing.assert_close(x_t, noise)
    x_t, t, _, _ = proc.training_inputs(x0, noise, torch.full((6,), -50.0))
    torch.testing.assert_close(x_t, x0)


# ---- diffusion -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [1.0, 0.5, 2.0])
def test_diffusion_schedule(shift):
    proc = build_objective(ObjectiveConfig(kind="diffusion", schedule_shift=shift))
    assert isinstance(proc, Diffusion)
    t = torch.linspace(0, 1, 201)
    lam = proc.logsnr(t)
    assert torch.isfinite(lam).all()
    assert (lam[1:] < lam[:-1]).all()  # strictly decreasing: t=0 data, t=1 noise
    assert lam[0] == pytest.approx(15 + 2 * math.log(shift), abs=1e-3)
    assert lam[-1] == pytest.approx(-15 + 2 * math.log(shift), abs=1e-3)
    a, s = proc.alpha_sigma(lam)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(t))
    assert (a[1:] <= a[:-1]).all() and (s[1:] >= s[:-1]).all()
    w = proc.weight(t)
    assert torch.isfinite(w).all() and (w > 0).all()


def test_diffusion_shift_moves_logsnr():
    t = torch.linspace(0.1, 0.9, 9)
    base = Diffusion(ObjectiveConfig(kind="diffusion")).logsnr(t)
    shifted = Diffusion(ObjectiveConfig(kind="diffusion", schedule_shift=0.5)).logsnr(t)
    torch.testing.assert_close(shifted - base, torch.full_like(t, 2 * math.log(0.5)))


def test_diffusion_inputs():
    proc = Diffusion(ObjectiveConfig(kind="diffusion", sigmoid_bias=-1.0))
    x0, noise, u = _draws(b=64)
    x_t, t, target, weight = proc.training_inputs(x0, noise, u)
    assert ((t > 0) & (t < 1)).all()
    torch.testing.assert_close(t, torch.special.ndtr(u))
    lam = proc.logsnr(t)
    a, s = proc.alpha_sigma(lam)
    torch.testing.assert_close(x_t, a.view(-1, 1, 1, 1) * x0 + s.view(-1, 1, 1, 1) * noise)
    assert torch.equal(target, x0)
    torch.testing.assert_close(weight, proc.weight(t))


@pytest.mark.parametrize("bias,shift", [(0.5, 1.0), (-2.0, 0.5)])
def test_diffusion_weight_is_kingma_gao_sigmoid_loss(bias, shift):
    """w·||x0 - x̂0||² == ½·sigmoid(b - λ)·(−dλ/dt)·||ε - ε̂||² (Kingma & Gao 2023), ε̂ the noise implied by x̂0,
    −dλ/dt taken by finite differences of the schedule (so a missing Jacobian factor fails)."""
    proc = Diffusion(ObjectiveConfig(kind="diffusion", sigmoid_bias=bias, schedule_shift=shift))
    x0, noise, u = _draws(b=8)
    x_t, t, target, weight = proc.training_inputs(x0, noise, u)
    x0_hat = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    lam = proc.logsnr(t).double()
    a, s = (v.view(-1, 1, 1, 1) for v in proc.alpha_sigma(lam))  # float64: ε̂ loses digits at low noise in fp32
    x0, x0_hat, noise = x0.double(), x0_hat.double(), noise.double()
    eps_hat = (a * x0 + s * noise - a * x0_hat) / s
    h = 1e-6
    td = t.double()
    t_min = math.atan(math.exp(-7.5)) * 2 / math.pi  # the schedule's λ range is [-15, 15] before the shift
    t_max = math.atan(math.exp(7.5)) * 2 / math.pi

    def lam_of(tt):  # the shifted cosine schedule written out, in float64
        tp = t_min + tt * (t_max - t_min)
        return -2 * torch.log(torch.tan(math.pi * tp / 2)) + 2 * math.log(shift)
    neg_dlam_dt = -(lam_of(td + h) - lam_of(td - h)) / (2 * h)
    lhs = weight.double() * ((x0_hat - x0) ** 2).flatten(1).mean(1)
    rhs = 0.5 * torch.sigmoid(bias - lam) * neg_dlam_dt * ((eps_hat - noise) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(lhs, rhs, rtol=2e-3, atol=1e-8)


def test_diffusion_loss_is_uniform_in_logsnr():
    """With t ~ U(0, 1) the expected ε-space weight equals ½·∫ sigmoid(b − λ) dλ over the schedule's λ range:
    the Jacobian turns the time average into an integral over λ (without it the mean is ≈ 0.5·E[sigmoid])."""
    bias = -1.0
    proc = Diffusion(ObjectiveConfig(kind="diffusion", sigmoid_bias=bias))
    t = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000  # midpoint rule on (0, 1)
    lam = proc.logsnr(t).double()
    eps_weight = proc.weight(t).double() * torch.exp(-lam)  # weight on ||ε - ε̂||²
    softplus = torch.nn.functional.softplus
    exact = 0.5 * float(softplus(torch.tensor(bias + 15.0)) - softplus(torch.tensor(bias - 15.0)))
    assert float(eps_weight.mean()) == pytest.approx(exact, rel=1e-3)


def test_objective_config_errors():
    with pytest.raises(ValueError, match="objective.kind"):
        build_objective(ObjectiveConfig(kind="ddim"))
    with pytest.raises(ValueError, match="t_std"):
        build_objective(ObjectiveConfig(t_std=0.0))
    with pytest.raises(ValueError, match="schedule_shift"):
        build_objective(ObjectiveConfig(kind="diffusion", schedule_shift=-1.0))


# ---- both objectives train ---------------------------------------------------------------------------------------

def _toy_batch(n: int = 12):
    """Fixed small batch of structured 8×8 images in [-1, 1] with labels 0..2."""
    yy, xx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    pats = torch.stack([(yy // 2) % 2, (xx // 2) % 2, (yy // 2 + xx // 2) % 2]).float() * 2 - 1  # (3, 8, 8)
    y = torch.arange(n) % 3
    return pats[y][:, None], y


def _eval_loss(model, proc, x0, y, loops, draws):
    with torch.no_grad():
        total = 0.0
        for noise, u in draws:
            x_t, t, target, w = proc.training_inputs(x0, noise, u)
            total += proc.gt_loss(model(x_t, t, y, loops=loops), target, w).item()
    return total / len(draws)


@pytest.mark.parametrize("kind", ["rectified_flow", "diffusion"])
def test_objective_reduces_training_loss(kind):
    torch.manual_seed(0)
    model = FlowTransformer(FlowModelConfig(image_size=8, channels=1, patch=4, dim=32, heads=2, blocks=1,
                                            mlp_ratio=2.0, num_classes=3))
    proc = build_objective(ObjectiveConfig(kind=kind))
    x0, y = _toy_batch()
    g = torch.Generator().manual_seed(1)
    eval_draws = [(torch.randn(x0.shape, generator=g), torch.randn(len(y), generator=g)) for _ in range(4)]
    start = _eval_loss(model, proc, x0, y, 2, eval_draws)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(250):
        noise, u = torch.randn(x0.shape, generator=g), torch.randn(len(y), generator=g)
        x_t, t, target, w = proc.training_inputs(x0, noise, u)
        loss = proc.gt_loss(model(x_t, t, y, loops=2), target, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = _eval_loss(model, proc, x0, y, 2, eval_draws)
    assert math.isfinite(end)
    assert end < 0.7 * start, (start, end)
