"""N-D geometry: Patchify, sincos_nd, a one-frame clip model equal to the image model, clip and latent shapes."""
from __future__ import annotations

import pytest
import torch
from einops import rearrange

from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.models.masked import MaskedModelConfig, MaskedTransformer
from elt.nn.embed import sincos_2d, sincos_nd
from elt.nn.patch import Patchify
from elt.objectives.flow import Diffusion, ObjectiveConfig, RectifiedFlow, expand_like
from elt.sampling.flow import ddpm_sample, euler_sample, sample_images


def reference_sincos_2d(dim: int, h: int, w: int) -> torch.Tensor:
    """The 2-D formula every image model was trained with (written out, independent of sincos_nd)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    out_y, out_x = ys.reshape(-1, 1) * omega[None], xs.reshape(-1, 1) * omega[None]
    return torch.cat([out_x.sin(), out_x.cos(), out_y.sin(), out_y.cos()], dim=1).float()


# ---- Patchify -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,patch", [((1, 8, 8), (4, 4)), ((3, 12, 8), (4, 2)), ((4, 8, 8), (2, 2)),
                                         ((2, 6, 6), (1, 1))])
def test_patchify_2d_is_the_token_order_of_image_models(shape, patch):
    x = torch.randn(3, *shape)
    p = Patchify(shape, patch)
    want = rearrange(x, "b c (gh p) (gw q) -> b (gh gw) (p q c)", p=patch[0], q=patch[1])
    assert torch.equal(p.patchify(x), want)
    assert p.grid == (shape[1] // patch[0], shape[2] // patch[1]) and p.num_tokens == want.shape[1]
    assert p.patch_dim == want.shape[2]
    back = rearrange(want, "b (gh gw) (p q c) -> b c (gh p) (gw q)", gh=p.grid[0], p=patch[0], q=patch[1])
    assert torch.equal(p.unpatchify(want), back)


@pytest.mark.parametrize("patch", [(1, 4, 4), (2, 4, 4), (4, 2, 8)])
def test_patchify_3d_round_trip_and_order(patch):
    x = torch.randn(2, 3, 4, 8, 8)
    p = Patchify((3, 4, 8, 8), patch)
    tokens = p.patchify(x)
    assert tokens.shape == (2, p.num_tokens, p.patch_dim) == (2, 256 // (patch[0] * patch[1] * patch[2]),
                                                              3 * patch[0] * patch[1] * patch[2])
    assert torch.equal(tokens, rearrange(x, "b c (gt r) (gh p) (gw q) -> b (gt gh gw) (r p q c)",
                                         r=patch[0], p=patch[1], q=patch[2]))
    assert torch.equal(p.unpatchify(tokens), x)


@pytest.mark.parametrize("shape,patch,match", [((1, 8, 8), (3, 4), "does not divide"),
                                               ((1, 8, 8), (4,), "one positive integer per spatial axis"),
                                               ((1, 8), (4, 4), "one positive integer per spatial axis"),
                                               ((0, 8, 8), (4, 4), "positive integers")])
def test_patchify_rejects_bad_geometry(shape, patch, match):
    with pytest.raises(ValueError, match=match):
        Patchify(shape, patch)


# ---- positions ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim,h,w", [(32, 7, 7), (64, 3, 5), (8, 1, 1), (256, 14, 14)])
def test_sincos_nd_equals_the_2d_formula_bit_for_bit(dim, h, w):
    assert torch.equal(sincos_nd(dim, (h, w)), reference_sincos_2d(dim, h, w))
    assert torch.equal(sincos_2d(dim, h, w), reference_sincos_2d(dim, h, w))


def test_sincos_nd_3d_gives_each_axis_its_own_channels():
    pos = sincos_nd(48, (2, 3, 4)).view(2, 3, 4, 48)  # channels: [w (16), h (16), t (16)]
    assert not torch.equal(pos[0, :, :, 32:], pos[1, :, :, 32:])  # time changes the time channels
    assert torch.equal(pos[0, :, :, :32], pos[1, :, :, :32])  # ... and nothing else
    assert torch.equal(pos[:, 0, :, :16], pos[:, 2, :, :16]) and not torch.equal(pos[:, 0, :, 16:32],
                                                                                  pos[:, 2, :, 16:32])
    with pytest.raises(ValueError, match="need an even dim of at least 6, got 63"):
        sincos_nd(63, (2, 3, 4))


def test_sincos_nd_spreads_a_width_that_does_not_divide_over_the_axes():
    """dim 64 on a 3-D grid (MAGVIT's 1024 likewise): 32 pairs as 11 (w), 11 (h), 10 (t), each axis's channels
    a function of its own coordinate only, at the frequencies of a single-axis embedding of that width."""
    pos = sincos_nd(64, (2, 3, 4)).view(2, 3, 4, 64)
    w, h, t = pos[..., :22], pos[..., 22:44], pos[..., 44:]
    assert torch.equal(w[:, :, 1], w[0, 0, 1].expand(2, 3, 22))  # w channels ignore t and h
    assert torch.equal(h[:, 2], h[0, 2, 0].expand(2, 4, 22)) and not torch.equal(h[:, 1], h[:, 2])
    assert torch.equal(t[1], t[1, 0, 0].expand(3, 4, 20)) and not torch.equal(t[0], t[1])
    assert torch.equal(w[0, 0], sincos_nd(22, (4,))) and torch.equal(h[0, :, 0], sincos_nd(22, (3,)))
    assert torch.equal(t[:, 0, 0], sincos_nd(20, (2,)))


# ---- models ---------------------------------------------------------------------------------------------------

IMAGE = dict(image_size=8, channels=2, patch=4, dim=48, heads=2, blocks=2, mlp_ratio=2.0, num_classes=3)


def test_one_frame_clip_model_is_the_image_model(randomize):
    torch.manual_seed(0)
    image = FlowTransformer(FlowModelConfig(**IMAGE))
    torch.manual_seed(0)
    clip = FlowTransformer(FlowModelConfig(**IMAGE, frames=1))
    a, b = image.state_dict(), clip.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # same init, same keys
    assert torch.equal(image.pos, clip.pos)
    randomize(image, seed=3)
    clip.load_state_dict(image.state_dict())
    x, t, y = torch.randn(3, 2, 8, 8), torch.tensor([0.2, 0.5, 0.9]), torch.tensor([0, 1, 3])
    want = image(x, t, y, loops=2, exits=[1, 2])
    got = clip(x[:, :, None], t, y, loops=2, exits=[1, 2])
    assert clip.sample_shape == (2, 1, 8, 8) and image.sample_shape == (2, 8, 8)
    for w, g in zip(want, got):
        assert torch.equal(g[:, :, 0], w)


def _check_flow_model(model: FlowTransformer, shape: tuple[int, ...]) -> None:
    """Forward with exits, a training loss with backward, and a few Euler and DDPM steps, all at `shape`."""
    assert model.sample_shape == shape
    B = 3
    x0, noise, u = torch.rand(B, *shape) * 2 - 1, torch.randn(B, *shape), torch.randn(B)
    y = torch.tensor([0, 1, 3])
    for process in (RectifiedFlow(ObjectiveConfig()), Diffusion(ObjectiveConfig(kind="diffusion"))):
        x_t, t, target, weight = process.training_inputs(x0, noise, u)
        assert x_t.shape == target.shape == (B, *shape)
        student, teacher = model(x_t, t, y, loops=3, exits=[1, 3])
        assert student.shape == teacher.shape == (B, *shape)
        loss = process.gt_loss(teacher, target, weight) + process.dist_loss(student, teacher, weight)
        model.zero_grad()
        loss.backward()
        assert torch.isfinite(loss) and model.patch_embed.weight.grad.abs().sum() > 0
    model.eval()
    out = euler_sample(model, RectifiedFlow(ObjectiveConfig()), torch.randn(B, *shape), y, loops=[1, 2], steps=2,
                       cfg=2.0)
    assert out.shape == (B, *shape) and torch.isfinite(out).all()
    out = ddpm_sample(model, Diffusion(ObjectiveConfig(kind="diffusion")), torch.randn(B, *shape), y, loops=2,
                      steps=3, cfg=1.5, uncond=1)
    assert out.shape == (B, *shape) and torch.isfinite(out).all()


@pytest.mark.parametrize("frame_patch", [1, 2])
def test_video_shaped_flow_model_trains_and_samples(randomize, frame_patch):
    cfg = FlowModelConfig(image_size=8, channels=1, patch=4, frames=4, frame_patch=frame_patch, dim=48, heads=2,
                          blocks=2, mlp_ratio=2.0, num_classes=3)
    assert cfg.token_grid == (4 // frame_patch, 2, 2) and cfg.num_tokens == 16 // frame_patch
    assert cfg.patch_dim == 16 * frame_patch
    _check_flow_model(randomize(FlowTransformer(cfg), seed=1, std=0.1), (1, 4, 8, 8))


def test_latent_shaped_flow_model_trains_and_samples(randomize):
    model = randomize(FlowTransformer(FlowModelConfig(image_size=8, channels=4, patch=2, dim=32, heads=2,
                                                      blocks=1, mlp_ratio=2.0, num_classes=3)), seed=2, std=0.1)
    _check_flow_model(model, (4, 8, 8))
    images = sample_images(model.eval(), RectifiedFlow(ObjectiveConfig()), torch.tensor([0, 2]), loops=1, steps=2)
    assert images.shape == (2, 8, 8, 4) and images.dtype == torch.uint8


def test_model_rejects_inputs_of_another_shape():
    model = FlowTransformer(FlowModelConfig(**IMAGE, frames=2))
    with pytest.raises(ValueError, match=r"expected clips of shape \(B, 2, 2, 8, 8\)"):
        model(torch.zeros(1, 2, 8, 8), torch.zeros(1), torch.zeros(1, dtype=torch.long), loops=1)


@pytest.mark.parametrize("change,match", [
    ({"frames": -1}, "model.frames must be 0"),
    ({"frame_patch": 2}, "frame_patch=2 needs a time axis"),
    ({"frames": 3, "frame_patch": 2}, "does not divide model.frames=3"),
    ({"frames": 4, "dim": 63, "heads": 3}, "must be even and at least 6"),
    ({"frame_patch": 0}, "model.frame_patch must be >= 1"),
])
def test_bad_clip_geometry_is_one_clear_error(change, match):
    with pytest.raises(ValueError, match=match):
        FlowModelConfig(**{**IMAGE, **change}).validate()


def test_masked_model_token_grid_and_positions():
    cfg = MaskedModelConfig(grid=4, codebook_size=16, dim=32, heads=2)
    torch.manual_seed(0)
    m = MaskedTransformer(cfg)
    assert cfg.token_grid == (4, 4) and cfg.tokens == 16 and m.sample_shape == (4, 4)
    assert torch.equal(m.pos.detach()[0], reference_sincos_2d(32, 4, 4))


# ---- objectives -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 2, 8, 8), (3, 1, 4, 8, 8), (3, 5)])
def test_expand_like_broadcasts_one_value_per_sample(shape):
    x, t = torch.randn(*shape), torch.tensor([0.1, 0.5, 0.9])
    e = expand_like(t, x)
    assert e.shape == (3,) + (1,) * (len(shape) - 1)
    for i in range(3):
        assert torch.equal((e * x)[i], t[i] * x[i])
    x_t, *_ = RectifiedFlow(ObjectiveConfig()).training_inputs(x, torch.zeros_like(x), torch.zeros(3))
    assert torch.equal(x_t, 0.5 * x)  # t = sigmoid(0) = 0.5 for every sample: x_t = (1 - t)·x0
