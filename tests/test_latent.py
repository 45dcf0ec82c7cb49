"""ELIT's latent interface (`elt.nn.latent`, `model.latent`): windows, Read/Write at initialisation, tail drop
(truncation equivalence, prefix independence), group locality, the core's token count, exits, plain models."""
from __future__ import annotations

import pytest
import torch

from conftest import randomize_
from elt.budget import Budget, BudgetError
from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.models.latent import LatentConfig
from elt.nn.latent import LatentInterface, LatentRead, LatentWrite, group_tokens, ungroup_tokens

# 8×8 grey images, patch 2: a 4×4 token grid, windows 2×2 -> G = 4 groups of 4 tokens; J_max = 5 latents per group
GRID, WINDOW, G, J_MAX = (4, 4), (2, 2), 4, 5


def _cfg(j_max: int = J_MAX, **latent) -> FlowModelConfig:
    return FlowModelConfig(image_size=8, channels=1, patch=2, dim=24, heads=2, blocks=2, mlp_ratio=2.0,
                           num_classes=3, latent=LatentConfig(window=2, latents_per_group=j_max, **latent))


def _model(j_max: int = J_MAX, seed: int = 0, **latent) -> FlowTransformer:
    torch.manual_seed(seed)
    return randomize_(FlowTransformer(_cfg(j_max, **latent)), seed).eval()


def _inputs(batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 1, 8, 8, generator=g, dtype=torch.float32), torch.rand(batch, generator=g,
            dtype=torch.float32), torch.randint(0, 3, (batch,), generator=g))


# ---- windows -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("grid,window", [((4, 6), (2, 3)), ((2, 4, 4), (1, 2, 2)), ((4, 4, 2), (2, 2, 1))])
def test_group_then_ungroup_is_the_identity_and_groups_hold_their_windows(grid, window):
    n = torch.tensor(grid).prod().item()
    idx = torch.arange(n, dtype=torch.float32).reshape(1, n, 1)  # token raster index
    grouped = group_tokens(idx, grid, window)  # (1, G, w, 1)
    assert torch.equal(ungroup_tokens(grouped, grid, window), idx)
    coords = torch.stack(torch.meshgrid(*(torch.arange(s) for s in grid), indexing="ij"), -1).reshape(n, -1)
    counts = [s // w for s, w in zip(grid, window)]
    for g in range(grouped.shape[1]):
        where = torch.tensor(torch.unravel_index(torch.tensor(g), counts))  # window g's position in the window grid
        members = coords[grouped[0, g, :, 0].long()]  # (w, k) token coordinates in group g
        assert torch.equal(members // torch.tensor(window), where.expand_as(members))
        assert len({tuple(m.tolist()) for m in members}) == torch.tensor(window).prod().item()


def test_a_window_that_does_not_tile_the_grid_is_refused():
    with pytest.raises(ValueError, match="does not tile the token grid"):
        group_tokens(torch.zeros(1, 16, 2), (4, 4), (3, 3))


# ---- Read and Write at initialisation ----------------------------------------------------------------------------

def test_read_starts_by_passing_the_queries_through_and_write_as_the_identity():
    torch.manual_seed(0)
    read, write = LatentRead(16, 2, J_MAX), LatentWrite(16, 2)
    s = torch.randn(3, G, 4, 16, dtype=torch.float32)  # (B, G, w, D)
    c = torch.randn(3, 16, dtype=torch.float32)
    for J in (1, 3, J_MAX):
        assert torch.equal(read(s, read.modulation(c), J), read.queries[:J].expand(3, G, J, 16))
        lat = torch.randn(3, G, J, 16, dtype=torch.float32)
        assert torch.equal(write(s, lat), s)


def test_with_write_at_its_initialisation_the_output_does_not_depend_on_the_budget():
    model = _model()
    with torch.no_grad():
        for lin in (model.latent.interface.write_layer.attn.proj, model.latent.interface.write_layer.mlp.fc2):
            lin.weight.zero_()
            lin.bias.zero_()
    x, t, y = _inputs()
    with torch.no_grad():
        full = model(x, t, y, loops=2)
        assert full.abs().max() > 0
        for J in range(1, J_MAX + 1):
            assert torch.equal(model(x, t, y, loops=2, latents=J), full)


# ---- tail drop -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("J", [1, 2, 4])
def test_truncation_equivalence_every_loop_count_and_exit(J):
    """A model at latents=J is the model built with J latents per group whose queries are the first J."""
    big = _model()
    small = FlowTransformer(_cfg(J)).eval()
    state = big.state_dict()
    state["latent.interface.read_layer.queries"] = state["latent.interface.read_layer.queries"][:J].clone()
    small.load_state_dict(state)
    x, t, y = _inputs()
    with torch.no_grad():
        for L in (1, 2, 3):
            assert torch.equal(big(x, t, y, loops=L, latents=J), small(x, t, y, loops=L))
        ours = big(x, t, y, loops=3, latents=J, exits=(1, 2, 3))
        theirs = small(x, t, y, loops=3, exits=(1, 2, 3))
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
        assert not torch.allclose(big(x, t, y, loops=2, latents=J), big(x, t, y, loops=2))  # J matters


def test_read_of_a_latent_does_not_depend_on_how_many_are_kept():
    model = _model()
    iface = model.latent.interface
    h = torch.randn(2, 16, 24, dtype=torch.float32)
    c = torch.randn(2, 24, dtype=torch.float32)
    with torch.no_grad():
        full = iface.read(h, c, J_MAX).reshape(2, G, J_MAX, 24)
        for J in range(1, J_MAX):
            part = iface.read(h, c, J).reshape(2, G, J, 24)
            torch.testing.assert_close(part, full[:, :, :J], rtol=0, atol=1e-6)


def test_group_locality_of_read_and_write():
    """Tokens of window g move only group g's latents in Read; group g's latents move only window g's tokens
    in Write."""
    model = _model()
    iface = model.latent.interface
    h = torch.randn(1, 16, 24, dtype=torch.float32)
    c = torch.randn(1, 24, dtype=torch.float32)
    lat = torch.randn(1, G * 3, 24, dtype=torch.float32)
    with torch.no_grad():
        read0, write0 = iface.read(h, c, 3).reshape(G, 3, 24), group_tokens(iface.write(h, lat), GRID, WINDOW)[0]
        for g in range(G):
            hg = group_tokens(h, GRID, WINDOW).clone()
            hg[:, g] += 1.0  # move every token of window g
            moved = iface.read(ungroup_tokens(hg, GRID, WINDOW), c, 3).reshape(G, 3, 24)
            changed = (moved != read0).flatten(1).any(1)  # (G,)
            assert changed.tolist() == [k == g for k in range(G)]
            lg = lat.reshape(1, G, 3, 24).clone()
            lg[:, g] += 1.0  # move every latent of group g
            out = group_tokens(iface.write(h, lg.reshape(1, G * 3, 24)), GRID, WINDOW)[0]
            assert (out != write0).flatten(1).any(1).tolist() == [k == g for k in range(G)]


def test_the_core_sees_exactly_G_times_J_tokens():
    model = _model()
    seen = []
    model.core.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    x, t, y = _inputs()
    with torch.no_grad():
        for J in (1, 3, None):
            model(x, t, y, loops=2, latents=J)
    assert seen == [(2, G * 1, 24), (2, G * 3, 24), (2, G * J_MAX, 24)]


def test_counted_flops_fall_with_the_latent_budget():
    from elt.anytime import forward_flops

    model = FlowTransformer(_cfg())
    flops = [forward_flops(model, Budget(2, J)) for J in range(1, J_MAX + 1)]
    assert flops == sorted(flops) and len(set(flops)) == J_MAX
    assert forward_flops(model, Budget(2)) == flops[-1]  # latents unset: the full budget
    assert forward_flops(model, Budget(3, 2)) > forward_flops(model, Budget(2, 2))


def test_exits_are_the_separate_calls_bit_for_bit():
    model = _model()
    x, t, y = _inputs()
    with torch.no_grad():
        for J in (2, J_MAX):
            outs = model(x, t, y, loops=3, latents=J, exits=(1, 2, 3))
            for L, out in zip((1, 2, 3), outs):
                assert torch.equal(out, model(x, t, y, loops=L, latents=J))


def test_bad_latent_counts_are_refused():
    model = _model()
    x, t, y = _inputs()
    for bad, err in ((0, BudgetError), (-1, BudgetError), (1.5, BudgetError), (J_MAX + 1, ValueError)):
        with pytest.raises(err, match="latents"):
            model(x, t, y, loops=1, latents=bad)


def test_a_model_without_the_section_is_the_plain_model():
    torch.manual_seed(0)
    cfg = FlowModelConfig(image_size=8, channels=1, patch=2, dim=24, heads=2, blocks=2, num_classes=3)
    plain = FlowTransformer(cfg)
    assert not hasattr(plain, "latent") and not any("latent" in k for k in plain.state_dict())
    assert {k.split(".")[0] for k in plain.state_dict()} == {"patch_embed", "t_embed", "y_embed", "core", "final"}
    with pytest.raises(BudgetError, match="no latent interface"):
        plain(*_inputs(), loops=1, latents=2)


def test_latent_interface_default_budget_and_group_count():
    iface = LatentInterface(12, 2, (4, 4, 4), (2, 2, 2), 3)
    assert iface.groups == 8 and iface.check_latents(None) == 3 and iface.group_pos.shape == (8, 12)


def test_a_latent_run_trains_saves_loads_and_samples(tiny_cfg_dict, tmp_path, monkeypatch):
    """A config with a model.latent section goes through `elt train` and `elt sample`; the checkpoint holds the
    interface and loads strictly."""
    import yaml

    from elt.cli import main
    from elt.models import from_pretrained

    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))
    d = tiny_cfg_dict()
    d["model"] |= {"patch": 2, "latent": {"window": [2, 2], "latents_per_group": 3}}
    d["train"] |= {"min_latents": 2}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "c.yaml"), "train.steps=2", "--out", str(run), "--no-progress"]) == 0
    model, cfg = from_pretrained(run)
    assert cfg.model.latent == LatentConfig(window=(2, 2), latents_per_group=3) and cfg.train.min_latents == 2
    assert model.latent.interface.read_layer.queries.shape == (3, cfg.model.dim)
    assert main(["sample", str(run), "--out", str(tmp_path / "s.npz"), "--per-class", "1", "--steps", "1",
                 "--precision", "fp32"]) == 0


def test_sample_latents_flags_reach_the_sampler_and_the_record(tiny_latent_run, tmp_path, monkeypatch, capsys):
    """`elt sample --latents J`: other samples than the full budget, fewer GFLOPs, J in the record;
    `--uncond-latents Jw`: two network calls per guided step, the unconditional one at Jw."""
    import json

    import numpy as np

    from elt.anytime import gflops_per_sample
    from elt.cli import main
    from elt.models import from_pretrained

    _, run = tiny_latent_run
    base = ["sample", str(run), "--per-class", "1", "--steps", "2", "--loops", "2", "--precision", "fp32"]
    assert main([*base, "--out", str(tmp_path / "full.npz")]) == 0
    assert main([*base, "--out", str(tmp_path / "one.npz"), "--latents", "1"]) == 0
    full, one = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("full", "one"))
    assert full["latents"] is None and one["latents"] == 1 and one["uncond_latents"] is None
    assert not np.array_equal(np.load(tmp_path / "full.npz")["arr_0"], np.load(tmp_path / "one.npz")["arr_0"])
    model, _ = from_pretrained(run)
    assert one["gflops_per_sample"] == pytest.approx(gflops_per_sample(model, Budget(2, 1), 2, 1.0))
    assert one["gflops_per_sample"] < full["gflops_per_sample"]

    calls = []
    forward = FlowTransformer.forward

    def spy(self, x, t, y, loops, exits=None, latents=None):
        if not torch.is_grad_enabled() and len(x) > 1:  # sampling calls, not the FLOP counter's batch of 1
            calls.append((len(x), loops, latents, sorted(set(y.tolist()))))
        return forward(self, x, t, y, loops, exits, latents)

    monkeypatch.setattr(FlowTransformer, "forward", spy)
    assert main([*base, "--out", str(tmp_path / "cheap.npz"), "--cfg", "2", "--uncond-latents", "1"]) == 0
    assert calls == [(3, 2, None, [0, 1, 2]), (3, 2, 1, [3])] * 2  # per step: full budget, null label at Jw=1
    cheap = json.loads((tmp_path / "cheap.json").read_text())
    assert cheap["latents"] is None and cheap["uncond_latents"] == 1
    assert cheap["gflops_per_sample"] == pytest.approx(gflops_per_sample(model, Budget(2), 2, 2.0, Budget(2, 1)))
    assert cheap["gflops_per_sample"] < gflops_per_sample(model, 2, 2, 2.0)
    assert "uncond_latents=1" in capsys.readouterr().out
