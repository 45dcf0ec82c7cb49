"""Loop semantics of the looped core and the ELT-DiT: block calls, exits, weight sharing, init, errors."""
from __future__ import annotations

import copy

import pytest
import torch

from elt.config import ConfigError
from elt.models import build_model
from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.nn.looped import LoopedCore, check_loops

DIM = 32


def tiny_model(seed: int = 0, **kw) -> FlowTransformer:
    torch.manual_seed(seed)
    cfg = dict(image_size=8, channels=1, patch=4, dim=DIM, heads=2, blocks=2, mlp_ratio=2.0, num_classes=3)
    cfg.update(kw)
    return FlowTransformer(FlowModelConfig(**cfg))


def inputs(b: int = 3, seed: int = 1, side: int = 8, channels: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, channels, side, side, generator=g)
    t = torch.rand(b, generator=g)
    y = torch.randint(0, 3, (b,), generator=g)
    return x, t, y


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- block calls ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loops", [1, 2, 3, 5])
def test_loops_run_n_times_l_block_calls(loops, randomize):
    model = randomize(tiny_model(blocks=2))
    hooked = [0] * len(model.core.blocks)
    for i, blk in enumerate(model.core.blocks):
        blk.register_forward_hook(lambda *_, i=i: hooked.__setitem__(i, hooked[i] + 1))
    model.core.block_calls = 0
    x, t, y = inputs()
    model(x, t, y, loops=loops)
    assert model.core.block_calls == 2 * loops
    assert hooked == [loops, loops]  # every unique block runs once per loop


def test_exits_cost_one_pass_to_the_deepest_exit(randomize):
    model = randomize(tiny_model(blocks=3))
    x, t, y = inputs()
    model.core.block_calls = 0
    outs = model(x, t, y, loops=4, exits=(1, 4))
    assert len(outs) == 2
    assert model.core.block_calls == 3 * 4


# ---- exits equal separate forwards ------------------------------------------------------------------------

@pytest.mark.parametrize("exits", [(1, 3), (2, 3), (1, 2, 3), (3,)])
def test_exits_equal_separate_forwards(exits, randomize):
    model = randomize(tiny_model()).eval()
    x, t, y = inputs()
    with torch.no_grad():
        outs = model(x, t, y, loops=3, exits=exits)
        assert isinstance(outs, list) and len(outs) == len(exits)
        for e, out in zip(exits, outs):
            ref = model(x, t, y, loops=e)
            assert out.shape == x.shape
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # and the exits really differ from each other (the loops do something)
    if len(outs) > 1:
        assert not torch.allclose(outs[0], outs[-1], atol=1e-4)


def test_exits_are_returned_sorted_and_unique(randomize):
    model = randomize(tiny_model()).eval()
    x, t, y = inputs()
    with torch.no_grad():
        outs = model(x, t, y, loops=3, exits=(3, 1, 3))
        ref1, ref3 = model(x, t, y, loops=1), model(x, t, y, loops=3)
    assert len(outs) == 2
    torch.testing.assert_close(outs[0], ref1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outs[1], ref3, rtol=1e-5, atol=1e-6)


def test_core_composes_loops(randomize):
    """g^(a+b)(x) == g^b(g^a(x)): a loop is the same function every time (shared weights, same condition)."""
    torch.manual_seed(0)
    core = randomize(LoopedCore(DIM, 2, blocks=2, mlp_ratio=2.0), std=0.1)
    x, c = torch.randn(2, 4, DIM), torch.randn(2, DIM)
    with torch.no_grad():
        (five,) = core(x, c, loops=5)
        (two,) = core(x, c, loops=2)
        (then_three,) = core(two, c, loops=3)
        # manual unrolled reference: the same block objects, applied in order, five times
        mods = [blk.modulation(c) for blk in core.blocks]
        h = x
        for _ in range(5):
            for blk, mod in zip(core.blocks, mods):
                h = blk(h, mod)
    torch.testing.assert_close(five, then_three, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(five, h, rtol=0, atol=0)


# ---- parameters do not depend on L ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["ilsd", "vanilla"])
def test_parameter_count_independent_of_loops(make_config, mode):
    counts = {L: n_params(build_model(make_config(f"train.mode={mode}", f"train.loops={L}"))) for L in (2, 3, 6)}
    assert len(set(counts.values())) == 1, counts
    model = build_model(make_config(f"train.mode={mode}", "train.loops=2"))
    assert len(model.core.blocks) == 2
    before = n_params(model)
    x, t, y = inputs()
    for L in (1, 4, 9):
        model(x, t, y, loops=L)
        assert n_params(model) == before


def test_loops_beyond_trained_l_max(make_config, randomize):
    cfg = make_config("train.loops=3")
    model = randomize(build_model(cfg)).eval()
    x, t, y = inputs()
    model.core.block_calls = 0
    with torch.no_grad():
        out7 = model(x, t, y, loops=7)
        out3 = model(x, t, y, loops=3)
    assert out7.shape == x.shape and torch.isfinite(out7).all()
    assert model.core.block_calls == 2 * (7 + 3)
    assert not torch.allclose(out7, out3)


# ---- errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loops", [0, -1, 2.0, 1.5, "3", True, None])
def test_bad_loops_raise(loops):
    model = tiny_model()
    x, t, y = inputs()
    with pytest.raises(ValueError, match="loops must be an integer >= 1"):
        model(x, t, y, loops=loops)
    with pytest.raises(ValueError, match="loops must be an integer >= 1"):
        check_loops(loops)


@pytest.mark.parametrize("exits", [(0, 2), (4,), (1, 4), (), (-1,)])
def test_exits_outside_range_raise(exits):
    model = tiny_model()
    x, t, y = inputs()
    with pytest.raises(ValueError, match=r"exits must lie in 1\.\.loops=3"):
        model(x, t, y, loops=3, exits=exits)


def test_wrong_image_shape_raises():
    model = tiny_model()
    with pytest.raises(ValueError, match="expected images of shape"):
        model(torch.zeros(2, 1, 12, 12), torch.zeros(2), torch.zeros(2, dtype=torch.long), loops=1)


def test_patch_that_does_not_divide_image_raises(make_config):
    with pytest.raises(ValueError, match="does not divide"):
        FlowModelConfig(image_size=8, patch=3, dim=DIM, heads=2).validate()
    with pytest.raises(ValueError, match="does not divide"):
        tiny_model(patch=3)
    with pytest.raises(ConfigError, match="model.patch=3 does not divide model.image_size=8"):
        make_config("model.patch=3")


def test_heads_that_do_not_divide_dim_raise():
    with pytest.raises(ValueError, match="divisible"):
        tiny_model(heads=3)


# ---- weight sharing ------------------------------------------------------------------------------------------

def test_changing_block0_changes_every_loop_count(randomize):
    model = randomize(tiny_model()).eval()
    x, t, y = inputs()
    with torch.no_grad():
        before = model(x, t, y, loops=4, exits=(1, 2, 3, 4))
        model.core.blocks[0].mlp.fc2.weight.add_(0.5)
        after = model(x, t, y, loops=4, exits=(1, 2, 3, 4))
    for L, (b, a) in enumerate(zip(before, after), start=1):
        assert (a - b).abs().max() > 1e-4, f"loop count {L} did not use block 0"


def test_shared_blocks_get_the_sum_of_every_loops_gradient(randomize):
    """Weight sharing: the gradient of a block looped 3 times equals the sum of the gradients of 3 untied
    copies of it, one per loop (not one loop's share, not a gradient that skips the earlier loops)."""
    torch.manual_seed(0)
    core = randomize(LoopedCore(DIM, 2, blocks=2, mlp_ratio=2.0), std=0.1)
    x, c = torch.randn(2, 4, DIM), torch.randn(2, DIM)
    copies = [copy.deepcopy(core.blocks) for _ in range(3)]  # an unrolled network with untied weights
    (out,) = core(x, c, loops=3)
    out.pow(2).sum().backward()
    h = x
    for blocks in copies:
        mods = [blk.modulation(c) for blk in blocks]
        for blk, mod in zip(blocks, mods):
            h = blk(h, mod)
    torch.testing.assert_close(h, out, rtol=0, atol=0)  # the same function
    h.pow(2).sum().backward()
    per_loop = [dict(cp.named_parameters()) for cp in copies]
    for name, p in core.blocks.named_parameters():
        torch.testing.assert_close(p.grad, sum(d[name].grad for d in per_loop), rtol=1e-4, atol=1e-6, msg=name)
    last_only = {name: per_loop[-1][name].grad for name in per_loop[-1]}
    assert any(not torch.allclose(p.grad, last_only[name], rtol=1e-3, atol=1e-5)
               for name, p in core.blocks.named_parameters())


# ---- adaLN-Zero init -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loops", [1, 3, 7])
def test_fresh_model_outputs_exact_zeros(loops):
    model = tiny_model(seed=3)
    x, t, y = inputs(seed=5)
    out = model(x, t, y, loops=loops)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0


def test_fresh_blocks_are_the_identity():
    torch.manual_seed(0)
    core = LoopedCore(DIM, 2, blocks=2, mlp_ratio=2.0)
    x, c = torch.randn(2, 4, DIM), torch.randn(2, DIM)
    (out,) = core(x, c, loops=3)
    assert torch.equal(out, x)


# ---- baseline mode ---------------------------------------------------------------------------------------------

def test_baseline_builds_n_times_l_unique_blocks(make_config):
    base_cfg = make_config("train.mode=baseline", "train.loops=3")
    elt_cfg = make_config("train.mode=ilsd", "train.loops=3")
    assert base_cfg.model_blocks == 6 and base_cfg.train_loops == 1
    assert elt_cfg.model_blocks == 2 and elt_cfg.train_loops == 3
    base, elt = build_model(base_cfg), build_model(elt_cfg)
    assert len(base.core.blocks) == 6 and len(elt.core.blocks) == 2
    block_params = n_params(elt.core.blocks[0])
    assert n_params(base) == n_params(elt) + 4 * block_params
    # distinct parameter tensors per block
    ids = {id(blk.mlp.fc1.weight) for blk in base.core.blocks}
    assert len(ids) == 6
    x, t, y = inputs()
    base.core.block_calls = 0
    out = base(x, t, y, loops=1)
    assert out.shape == x.shape
    assert base.core.block_calls == 6


# ---- attention implementations agree ---------------------------------------------------------------------------

def test_attention_implementations_agree():
    from elt.nn.attention import SelfAttention

    torch.manual_seed(0)
    ref = SelfAttention(DIM, 2, qk_norm=True, impl="sdpa")
    x = torch.randn(3, 5, DIM, requires_grad=True)
    out_ref = ref(x)
    out_ref.pow(2).sum().backward()
    g_ref = x.grad.clone()
    for impl in ("math", "auto"):
        other = SelfAttention(DIM, 2, qk_norm=True, impl=impl)
        other.load_state_dict(ref.state_dict())
        x.grad = None
        out = other(x)
        out.pow(2).sum().backward()
        torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(x.grad, g_ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="impl"):
        SelfAttention(DIM, 2, impl="flash")


def test_compiled_core_does_not_recompile_per_call():
    """The block-call counter must not make torch.compile specialise (and recompile) on every forward."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    core = LoopedCore(dim=16, heads=2, blocks=2)
    fn = torch.compile(core, backend="eager")
    x, c = torch.randn(2, 4, 16), torch.randn(2, 16)
    for _ in range(3):
        fn(x, c, loops=2)
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


def test_mlp_activation_option(make_config):
    """model.mlp_act picks the GELU form; both are the same function to ~1e-3, and a typo is a clear error."""
    from elt.nn.block import Mlp

    x = torch.linspace(-4, 4, 101)
    tanh_form, exact = Mlp(1, 1, "gelu_tanh").act(x), Mlp(1, 1, "gelu").act(x)
    assert 0 < (tanh_form - exact).abs().max() < 1e-3
    model = build_model(make_config("model.mlp_act=gelu"))
    assert model.core.blocks[0].mlp.act.approximate == "none"
    with pytest.raises(ConfigError, match="mlp_act"):
        make_config("model.mlp_act=relu")
