"""The masked family: ELT-MaskGIT model, mask schedule, masked losses, soft-target distillation, decoding."""
from __future__ import annotations

import math

import pytest
import torch

from elt.config import ConfigError, load_config
from elt.models.masked import MaskedModelConfig, MaskedTransformer
from elt.objectives.ilsd import ilsd_loss
from elt.objectives.masked import draw_mask, mask_ratio, masked_cross_entropy, soft_cross_entropy
from elt.sampling.masked import DecodeSettings, guided_logits, remask_counts, sample_tokens

V, GRID = 16, 3  # 9 tokens per image


def tiny_model(blocks: int = 2, seed: int = 0) -> MaskedTransformer:
    torch.manual_seed(seed)
    m = MaskedTransformer(MaskedModelConfig(image_size=12, codebook_size=V, grid=GRID, dim=32, heads=2,
                                            blocks=blocks, mlp_ratio=2.0, num_classes=3))
    for name, p in m.named_parameters():  # adaLN-Zero and the zero head would make blocks identities
        if "ada" in name or name.startswith("head."):
            torch.nn.init.normal_(p, std=0.3)
    return m.eval()


# ---- model ---------------------------------------------------------------------------------------------------

def test_forward_shapes_exits_and_mask_token():
    m = tiny_model()
    tokens = torch.randint(0, V + 1, (4, GRID * GRID))
    y = torch.tensor([0, 1, 2, m.null_label])
    out = m(tokens, y, loops=3)
    assert out.shape == (4, GRID * GRID, V)
    exits = m(tokens, y, loops=3, exits=(1, 3))
    assert torch.allclose(exits[1], out, atol=1e-6)
    assert not torch.allclose(exits[0], out)
    assert m.mask_id == V and m.tok_embed.num_embeddings == V + 1


def test_bad_token_shape_is_an_error():
    m = tiny_model()
    with pytest.raises(ValueError, match=r"shape \(B, 9\)"):
        m(torch.zeros(1, GRID, GRID, dtype=torch.long), torch.zeros(1, dtype=torch.long), loops=1)


# ---- mask schedule and training masks -------------------------------------------------------------------------

def test_cosine_schedule_endpoints_and_monotone():
    u = torch.linspace(0, 1, 101)
    r = mask_ratio(u, "cosine")
    assert r[0] == 1 and abs(float(r[-1])) < 1e-12
    assert (r[1:] <= r[:-1]).all()
    assert math.isclose(float(mask_ratio(0.5, "cosine")), math.cos(math.pi / 4))
    assert float(mask_ratio(0.5, "linear")) == 0.5 and float(mask_ratio(0.5, "square")) == 0.75
    with pytest.raises(ValueError, match="unknown mask schedule"):
        mask_ratio(0.5, "halton")


def test_draw_mask_counts_follow_the_schedule():
    g = torch.Generator().manual_seed(0)
    mask = draw_mask(2000, 49, g)
    counts = mask.sum(1)
    # E[cos(πu/2)] = 2/π: the mean masked share under the cosine schedule
    assert abs(counts.float().mean() / 49 - 2 / math.pi) < 0.03
    # count = ⌈49·cos(πu/2)⌉, so P(count <= n) = P(cos(πu/2) <= n/49) = 1 − (2/π)·arccos(n/49)
    for n in (10, 25, 40, 48):
        cdf = 1 - 2 / math.pi * math.acos(n / 49)
        assert abs(float((counts <= n).float().mean()) - cdf) < 0.04, n
    # the masked positions are uniform: every position is masked at the same rate 2/π (std ≈ 0.011)
    assert (mask.float().mean(0) - 2 / math.pi).abs().max() < 0.05


# ---- losses ------------------------------------------------------------------------------------------------

def test_masked_cross_entropy_ignores_unmasked_positions():
    torch.manual_seed(0)
    logits = torch.randn(3, 9, V, requires_grad=True)
    targets = torch.randint(0, V, (3, 9))
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[:, :4] = True
    loss = masked_cross_entropy(logits, targets, mask)
    ref = torch.nn.functional.cross_entropy(logits[:, :4].reshape(-1, V), targets[:, :4].reshape(-1))
    assert torch.allclose(loss, ref)
    loss.backward()
    assert logits.grad[:, 4:].abs().max() == 0 and logits.grad[:, :4].abs().max() > 0
    other = targets.clone()
    other[:, 4:] = (other[:, 4:] + 1) % V  # change only unmasked targets
    assert torch.allclose(masked_cross_entropy(logits, other, mask), loss)


def test_soft_cross_entropy_is_teacher_entropy_plus_kl_and_stops_teacher_gradient():
    torch.manual_seed(0)
    student = torch.randn(2, 9, V, requires_grad=True)
    teacher = torch.randn(2, 9, V, requires_grad=True)
    mask = torch.rand(2, 9) < 0.5
    mask[0, 0] = True
    loss = soft_cross_entropy(student, teacher, mask)
    p, q = teacher[mask].softmax(-1), student[mask].softmax(-1)
    entropy = -(p * p.log()).sum(-1)
    kl = (p * (p.log() - q.log())).sum(-1)
    assert torch.allclose(loss, (entropy + kl).mean(), atol=1e-5)
    loss.backward()
    assert teacher.grad is None or teacher.grad.abs().max() == 0
    assert student.grad[~mask].abs().max() == 0 and student.grad[mask].abs().max() > 0
    # a one-hot teacher turns it into the hard cross-entropy on the teacher's argmax
    sharp = torch.full((2, 9, V), -1e4)
    sharp[..., 3] = 0
    hard = masked_cross_entropy(student, torch.full((2, 9), 3), mask)
    assert torch.allclose(soft_cross_entropy(student, sharp, mask), hard, atol=1e-5)
    # student == teacher leaves exactly the teacher's entropy
    assert torch.allclose(soft_cross_entropy(teacher, teacher, mask), entropy.mean(), atol=1e-5)


def test_ilsd_masked_loss_gradients_are_the_paper_terms():
    """L = GT(teacher) + λ·GT(student) + (1 − λ)·Dist(student, sg(teacher)): the teacher logits get the gradient
    of its GT term alone, the student logits λ·∇GT + (1 − λ)·∇Dist."""
    torch.manual_seed(0)
    tokens = torch.randint(0, V, (4, 9))
    mask = draw_mask(4, 9, torch.Generator().manual_seed(1))
    student = torch.randn(4, 9, V, requires_grad=True)
    teacher = torch.randn(4, 9, V, requires_grad=True)
    lam = 0.3
    gt = lambda p: masked_cross_entropy(p, tokens, mask)  # noqa: E731
    loss, parts = ilsd_loss(student, teacher, lam, gt, lambda s, t: soft_cross_entropy(s, t, mask))
    assert set(parts) == {"gt_teacher", "gt_student", "distill"}
    loss.backward()
    s, t = student.detach().requires_grad_(), teacher.detach().requires_grad_()
    g_gt_t, = torch.autograd.grad(gt(t), t)
    g_gt_s, = torch.autograd.grad(gt(s), s)
    g_dist, = torch.autograd.grad(soft_cross_entropy(s, teacher.detach(), mask), s)
    assert torch.allclose(teacher.grad, g_gt_t, atol=1e-7)
    assert torch.allclose(student.grad, lam * g_gt_s + (1 - lam) * g_dist, atol=1e-7)
    with torch.no_grad():
        assert float(loss) == pytest.approx(float(gt(t) + lam * gt(s) + (1 - lam) * soft_cross_entropy(s, t, mask)),
                                            rel=1e-6)


# ---- decoding ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens,steps", [(9, 1), (9, 4), (9, 9), (49, 12), (256, 24)])
def test_remask_counts_unmask_everything_in_k_steps(tokens, steps):
    counts = remask_counts(tokens, steps)
    assert len(counts) == steps and counts[-1] == 0
    left = [tokens] + counts
    assert all(a > b for a, b in zip(left, left[1:]))  # every step fixes at least one token


class Recorder(torch.nn.Module):
    """Wraps a model and records, per call, the loop count and how many inputs are [MASK]."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []
        self.cfg, self.mask_id, self.null_label = model.cfg, model.mask_id, model.null_label
        self.sample_shape = model.sample_shape

    def forward(self, tokens, y, loops):
        self.calls.append((loops, int((tokens == self.mask_id).sum(1).max()), len(tokens)))
        return self.model(tokens, y, loops=loops)


def test_decoding_fills_every_token_in_exactly_k_steps_with_per_step_loops():
    rec = Recorder(tiny_model())
    y = torch.tensor([0, 1, 2, 0])
    out = sample_tokens(rec, y, [1, 2, 3, 4], DecodeSettings(steps=4))
    assert out.shape == (4, GRID, GRID) and out.min() >= 0 and out.max() < V
    assert [c[0] for c in rec.calls] == [1, 2, 3, 4]
    # ⌊9·cos(π(k+1)/8)⌋ = 8, 6, 3 still masked after the first three steps
    assert [c[1] for c in rec.calls] == [9, 8, 6, 3]


def test_decoding_is_deterministic_per_seed_and_independent_of_batch_size():
    m = tiny_model()
    y = torch.arange(3).repeat(3)
    s = DecodeSettings(steps=3, cfg=2.0)
    a = sample_tokens(m, y, 2, s, seed=5, batch_size=9)
    b = sample_tokens(m, y, 2, s, seed=5, batch_size=4)
    c = sample_tokens(m, y, 2, s, seed=6, batch_size=9)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_guidance_doubles_the_batch_and_mixes_logits():
    rec = Recorder(tiny_model())
    tokens = torch.full((2, 9), V)
    y = torch.tensor([0, 1])
    plain = guided_logits(rec, tokens, y, 2, 1.0)
    assert rec.calls[-1][2] == 2
    mixed = guided_logits(rec, tokens, y, 2, 3.0)
    assert rec.calls[-1][2] == 4
    uncond = rec.model(tokens, torch.full_like(y, rec.null_label), loops=2)
    assert torch.allclose(mixed, uncond + 3.0 * (plain - uncond), atol=1e-5)


def test_decode_settings_are_checked():
    m = tiny_model()
    with pytest.raises(ValueError, match="steps <= 9"):
        sample_tokens(m, torch.zeros(1, dtype=torch.long), 1, DecodeSettings(steps=10))
    with pytest.raises(ValueError, match="temperatures must stay > 0"):
        sample_tokens(m, torch.zeros(1, dtype=torch.long), 1, DecodeSettings(steps=2, temp_bias=0.0))


# ---- config ------------------------------------------------------------------------------------------------

def test_masked_config_checks_tokenizer_agreement():
    cfg = load_config(None, ["family=masked"])
    assert cfg.model.tokens == 49 and cfg.model.codebook_size == cfg.tokenizer.codebook_size
    with pytest.raises(ConfigError, match="tokenizer.codebook_size"):
        load_config(None, ["family=masked", "model.codebook_size=128"])
    with pytest.raises(ConfigError, match="model.grid=7 does not match"):
        load_config(None, ["family=masked", "tokenizer.downsample=1"])
    with pytest.raises(ConfigError, match="decoding steps exceed"):
        load_config(None, ["family=masked", "sample.steps=50"])
    with pytest.raises(ConfigError, match="unknown config key 'model.patch'"):
        load_config(None, ["family=masked", "model.patch=4"])
