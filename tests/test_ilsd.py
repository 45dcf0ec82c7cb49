"""Intra-Loop Self Distillation: the combined loss, the stop-gradient, the λ curriculum, student-loop draws."""
from __future__ import annotations

import pytest
import torch

from elt.config import ConfigError
from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.objectives.flow import ObjectiveConfig, build_objective
from elt.objectives.ilsd import draw_student_loops, ilsd_lambda, ilsd_loss, step_generator


def _pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(4, 1, 8, 8, generator=g).requires_grad_(True)
    teacher = torch.randn(4, 1, 8, 8, generator=g).requires_grad_(True)
    target = torch.randn(4, 1, 8, 8, generator=g)
    weight = torch.rand(4, generator=g) + 0.5
    return student, teacher, target, weight


# ---- the loss ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lam", [1.0, 0.7, 0.25, 0.0])
def test_ilsd_loss_equals_hand_computation(lam):
    student, teacher, target, weight = _pair()
    proc = build_objective(ObjectiveConfig())
    gt = lambda p: proc.gt_loss(p, target, weight)  # noqa: E731
    dist = lambda s, t: proc.dist_loss(s, t, weight)  # noqa: E731
    loss, parts = ilsd_loss(student, teacher, lam, gt, dist)

    def wmse(a, b):
        return (weight * ((a - b) ** 2).mean(dim=(1, 2, 3))).mean()

    gt_t, gt_s, d = wmse(teacher, target), wmse(student, target), wmse(student, teacher)
    torch.testing.assert_close(loss, gt_t + lam * gt_s + (1 - lam) * d)
    torch.testing.assert_close(parts["gt_teacher"], gt_t)
    torch.testing.assert_close(parts["gt_student"], gt_s)
    torch.testing.assert_close(parts["distill"], d)
    assert all(not v.requires_grad for v in parts.values())


@pytest.mark.parametrize("lam", [0.0, 0.4])
def test_teacher_gets_no_gradient_from_distillation(lam):
    student, teacher, target, weight = _pair(1)
    gt = lambda p: ((p - target) ** 2).mean()  # noqa: E731
    naive_dist = lambda s, t: ((s - t) ** 2).mean()  # noqa: E731  (does NOT detach: ilsd_loss must)
    loss, _ = ilsd_loss(student, teacher, lam, gt, naive_dist)
    loss.backward()
    # the teacher's gradient is that of its own ground-truth term only
    t_ref = teacher.detach().clone().requires_grad_(True)
    gt(t_ref).backward()
    torch.testing.assert_close(teacher.grad, t_ref.grad)
    # the student gets λ·∇GT + (1-λ)·∇Dist
    s_ref = student.detach().clone().requires_grad_(True)
    (lam * gt(s_ref) + (1 - lam) * naive_dist(s_ref, teacher.detach())).backward()
    torch.testing.assert_close(student.grad, s_ref.grad)


@pytest.mark.parametrize("kind", ["rectified_flow", "diffusion"])
def test_dist_loss_stops_gradient_into_teacher(kind):
    proc = build_objective(ObjectiveConfig(kind=kind))
    student, teacher, _, weight = _pair(2)
    proc.dist_loss(student, teacher, weight).backward()
    assert teacher.grad is None
    # d/ds mean_b w_b·mean_pix (s - t)² = 2·w_b·(s - t) / (B·pixels)
    b, pixels = student.shape[0], student[0].numel()
    want = 2 * weight.view(-1, 1, 1, 1) * (student - teacher).detach() / (b * pixels)
    torch.testing.assert_close(student.grad, want)


def test_distillation_in_a_shared_model_flows_through_the_student_path_only():
    """With exits (1, 3) from one forward, the gradient of the distillation term equals that of
    Dist(f_L1(x), stopgrad(f_L3(x))) computed from two separate forwards."""
    torch.manual_seed(0)
    model = FlowTransformer(FlowModelConfig(image_size=8, channels=1, patch=4, dim=32, heads=2, blocks=2,
                                            mlp_ratio=2.0, num_classes=3))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    x, t, y = torch.randn(3, 1, 8, 8, generator=g), torch.rand(3, generator=g), torch.tensor([0, 1, 2])
    proc = build_objective(ObjectiveConfig())
    w = torch.ones(3)
    zero_gt = lambda p: p.sum() * 0.0  # noqa: E731
    dist = lambda s, te: proc.dist_loss(s, te, w)  # noqa: E731

    student, teacher = model(x, t, y, loops=3, exits=(1, 3))
    loss, _ = ilsd_loss(student, teacher, 0.0, zero_gt, dist)
    loss.backward()
    got = {k: p.grad.clone() for k, p in model.named_parameters()}

    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        teacher_ref = model(x, t, y, loops=3)
    proc.dist_loss(model(x, t, y, loops=1), teacher_ref, w).backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-4, atol=1e-7, msg=k)


# ---- λ curriculum ------------------------------------------------------------------------------------------

def test_lambda_linear_from_one_to_zero():
    total = 100
    assert ilsd_lambda(0, total) == 1.0
    assert ilsd_lambda(total, total) == 0.0
    assert ilsd_lambda(25, total) == pytest.approx(0.75)
    assert ilsd_lambda(50, total) == pytest.approx(0.5)
    vals = [ilsd_lambda(s, total) for s in range(total + 1)]
    diffs = [b - a for a, b in zip(vals, vals[1:])]
    assert all(d == pytest.approx(-1 / total) for d in diffs)  # linear
    assert ilsd_lambda(total + 50, total) == 0.0  # stays 0


def test_lambda_decay_fraction():
    total = 100
    assert ilsd_lambda(0, total, 0.5) == 1.0
    assert ilsd_lambda(25, total, 0.5) == pytest.approx(0.5)
    assert ilsd_lambda(50, total, 0.5) == 0.0
    assert all(ilsd_lambda(s, total, 0.5) == 0.0 for s in range(50, total))
    assert ilsd_lambda(50, total, 2.0) == pytest.approx(0.75)  # decays over twice the run: never reaches 0
    assert [ilsd_lambda(s, 7, 0.0) for s in range(3)] == [1.0, 0.0, 0.0]  # no curriculum: λ = 0 after step 0


# ---- student loop draws --------------------------------------------------------------------------------------

@pytest.mark.parametrize("lo,hi", [(1, 2), (1, 5), (2, 6), (3, 4)])
def test_student_loops_range_and_coverage(lo, hi):
    draws = [draw_student_loops(0, s, lo, hi) for s in range(300)]
    assert all(isinstance(d, int) for d in draws)
    assert min(draws) >= lo and max(draws) < hi
    assert set(draws) == set(range(lo, hi))


def test_student_loops_deterministic_in_seed_and_step():
    a = [draw_student_loops(7, s, 1, 6) for s in range(50)]
    b = [draw_student_loops(7, s, 1, 6) for s in reversed(range(50))][::-1]  # order of calls is irrelevant
    assert a == b
    c = [draw_student_loops(8, s, 1, 6) for s in range(50)]
    assert a != c  # the seed matters
    # global torch RNG state is neither used nor disturbed
    torch.manual_seed(0)
    ref = torch.rand(3)
    torch.manual_seed(0)
    draw_student_loops(7, 3, 1, 6)
    assert torch.equal(torch.rand(3), ref)


def test_step_generator_depends_on_seed_step_stream():
    def draw(*args):
        return torch.randn(4, generator=step_generator(*args))

    assert torch.equal(draw(0, 5), draw(0, 5))
    assert not torch.equal(draw(0, 5), draw(0, 6))
    assert not torch.equal(draw(0, 5), draw(1, 5))
    assert not torch.equal(draw(0, 5, 0), draw(0, 5, 1))


@pytest.mark.parametrize("lo,hi", [(3, 3), (4, 3), (0, 3)])
def test_bad_student_range_raises(lo, hi):
    with pytest.raises(ValueError, match="min_loops"):
        draw_student_loops(0, 0, lo, hi)


# ---- config errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("over", [["train.loops=2", "train.min_loops=2"], ["train.loops=2", "train.min_loops=3"],
                                  ["train.loops=1"], ["train.loops=3", "train.min_loops=0"]])
def test_config_rejects_bad_ilsd_range(make_config, over):
    with pytest.raises(ConfigError, match="min_loops"):
        make_config("train.mode=ilsd", *over)


def test_config_min_loops_only_matters_for_ilsd(make_config):
    cfg = make_config("train.mode=vanilla", "train.loops=2", "train.min_loops=2")
    assert cfg.train.loops == 2
    cfg = make_config("train.mode=vanilla", "train.loops=1")
    assert cfg.train_loops == 1
    with pytest.raises(ConfigError, match="train.loops must be >= 1"):
        make_config("train.mode=vanilla", "train.loops=0")
