"""ELIT's latent interface on ELT-MaskGIT (`model.latent` in a masked config): tail drop (truncation
equivalence), exits, the core's token count, plain models unchanged, Write at initialisation, the per-step J̃
of training and `elt sample --latents` on a masked run."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml

from conftest import randomize_
from elt.budget import Budget, BudgetError
from elt.models.latent import LatentConfig
from elt.models.masked import MaskedModelConfig, MaskedTransformer
from stand_ins import load_truncated
from test_masked_e2e import TINY_MASKED

V = 16
# (token grid side, window, G, J_max): one global group as the shipped 7×7 config (a prime side), and 4 groups
GEOMETRIES = {"G1": (3, 3, 1, 5), "G4": (4, 2, 4, 3)}


def _cfg(geometry: str, j_max: int | None = None, latent: bool = True, **model) -> MaskedModelConfig:
    side, window, _, jm = GEOMETRIES[geometry]
    section = LatentConfig(window=window, latents_per_group=j_max or jm) if latent else None
    return MaskedModelConfig(image_size=4 * side, codebook_size=V, grid=side, dim=24, heads=2, blocks=2,
                             mlp_ratio=2.0, num_classes=3, latent=section, **model)


def _model(geometry: str, j_max: int | None = None, seed: int = 0) -> MaskedTransformer:
    torch.manual_seed(seed)
    return randomize_(MaskedTransformer(_cfg(geometry, j_max)), seed).double().eval()


def _inputs(geometry: str, batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    side = GEOMETRIES[geometry][0]
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V + 1, (batch, side * side), generator=g)  # some [MASK] (id V) among them
    return tokens, torch.randint(0, 4, (batch,), generator=g)  # label 3 = the null label


# ---- the model -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_truncation_equivalence_every_loop_count_and_exit(geometry):
    """A masked model at latents=J is the model built with J latents per group whose Read queries are the
    first J of the big one (every other weight copied): at every loop count and every exit."""
    big = _model(geometry)
    tokens, y = _inputs(geometry)
    for J in range(1, GEOMETRIES[geometry][3]):
        small = load_truncated(big, MaskedTransformer(_cfg(geometry, J)).double().eval(), J)
        with torch.no_grad():
            for L in (1, 2, 3):
                assert torch.equal(big(tokens, y, loops=L, latents=J), small(tokens, y, loops=L))
            ours = big(tokens, y, loops=3, latents=J, exits=(1, 2, 3))
            theirs = small(tokens, y, loops=3, exits=(1, 2, 3))
            assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
            assert not torch.allclose(big(tokens, y, loops=2, latents=J), big(tokens, y, loops=2))  # J matters


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_exits_are_the_separate_calls_bit_for_bit(geometry):
    model = _model(geometry)
    tokens, y = _inputs(geometry)
    with torch.no_grad():
        for J in (1, 2, None):
            outs = model(tokens, y, loops=3, latents=J, exits=(1, 2, 3))
            for L, out in zip((1, 2, 3), outs):
                assert torch.equal(out, model(tokens, y, loops=L, latents=J))
            assert not torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_the_core_sees_exactly_G_times_J_tokens(geometry):
    _, _, G, j_max = GEOMETRIES[geometry]
    model = _model(geometry)
    seen = []
    model.core.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    tokens, y = _inputs(geometry)
    with torch.no_grad():
        for J in (1, 2, None):
            out = model(tokens, y, loops=2, latents=J)
            assert out.shape == (2, len(tokens[0]), V)  # logits for every token, whatever J
    assert seen == [(2, G * 1, 24), (2, G * 2, 24), (2, G * j_max, 24)]


def test_a_model_without_the_section_is_todays_plain_model():
    """No `latent` section: no new keys, the forward is embedding -> core -> head bit for bit, latents are
    refused; a model with the section draws the same plain weights at the same seed (its path comes last)."""
    torch.manual_seed(0)
    plain = MaskedTransformer(_cfg("G1", latent=False)).double().eval()
    keys = list(plain.state_dict())
    assert not hasattr(plain, "latent") and not any("latent" in k for k in keys)
    assert {k.split(".")[0] for k in keys} == {"tok_embed", "pos", "y_embed", "core", "head"}
    randomize_(plain)
    tokens, y = _inputs("G1")
    with torch.no_grad():
        c = plain.y_embed(y)
        for L in (1, 3):
            state = plain.core(plain.tok_embed(tokens) + plain.pos, c, L, (L,))[0]  # (B, T, D)
            assert torch.equal(plain(tokens, y, loops=L), plain.head(state, c))
    with pytest.raises(BudgetError, match="no latent interface"):
        plain(tokens, y, loops=1, latents=2)
    torch.manual_seed(0)
    fresh = MaskedTransformer(_cfg("G1", latent=False)).state_dict()
    torch.manual_seed(0)
    with_section = MaskedTransformer(_cfg("G1")).state_dict()
    names = list(with_section)
    assert names[:len(keys)] == keys and all(k.startswith("latent.") for k in names[len(keys):])
    assert all(torch.equal(fresh[k], with_section[k]) for k in keys)


def test_token_conditioning_with_a_latent_section_is_refused():
    with pytest.raises(ValueError, match=r"model\.conditioning: token does not combine with a model\.latent "
                                         r"section.*use model\.conditioning: adaln, or remove model\.latent"):
        MaskedTransformer(_cfg("G1", conditioning="token"))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_with_write_at_its_initialisation_the_logits_do_not_depend_on_the_budget(geometry):
    model = _model(geometry)
    with torch.no_grad():
        for lin in (model.latent.interface.write_layer.attn.proj, model.latent.interface.write_layer.mlp.fc2):
            lin.weight.zero_()
            lin.bias.zero_()
    tokens, y = _inputs(geometry)
    with torch.no_grad():
        full = model(tokens, y, loops=2)
        assert full.abs().max() > 0
        for J in range(1, GEOMETRIES[geometry][3] + 1):
            assert torch.equal(model(tokens, y, loops=2, latents=J), full)


def test_bad_latent_counts_are_refused():
    model = _model("G1")
    tokens, y = _inputs("G1")
    for bad, err in ((0, BudgetError), (-1, BudgetError), (1.5, BudgetError), (6, ValueError)):
        with pytest.raises(err, match="latents"):
            model(tokens, y, loops=1, latents=bad)


# ---- training and sampling a masked run with the interface ------------------------------------------------------

def _latent_masked_dict(data_dir, tok_dir) -> dict:
    """The end-to-end tests' tiny masked config (4×4 token grid) with one 4×4 window: G = 1, J_max = 3."""
    d = copy.deepcopy(TINY_MASKED)
    d["tokenizer"].update(steps=4, log_every=2, path=str(tok_dir))
    d["model"]["latent"] = {"window": 4, "latents_per_group": 3}
    d["train"].update(steps=4, min_latents=1, lr=0.01)  # a large step moves the zero-initialised head off zero
    d["data"]["name"] = str(data_dir)
    return d


@pytest.fixture(scope="module")
def latent_masked_run(tmp_path_factory, tiny_data_dir):
    """(config file, run folder, J̃ per forward of every training step) of a tiny masked run with the interface;
    the J̃ are what the model's forward was called with (a spy), in call order."""
    from elt.cli import main

    root = tmp_path_factory.mktemp("latent_masked")
    cfg = root / "masked_latent.yaml"
    cfg.write_text(yaml.safe_dump(_latent_masked_dict(tiny_data_dir, root / "tok")))
    seen, forward = [], MaskedTransformer.forward

    def spy(self, tokens, y, loops, exits=None, latents=None):
        if torch.is_grad_enabled():  # training forwards, not the final sample grid
            seen.append(latents)
        return forward(self, tokens, y, loops, exits, latents)

    mp = pytest.MonkeyPatch()
    mp.setenv("ELT_CACHE", str(root / "cache"))
    mp.setattr(MaskedTransformer, "forward", spy)
    try:
        assert main(["train", str(cfg), "--out", str(root / "run"), "--no-progress"]) == 0
    finally:
        mp.undo()
    return cfg, root / "run", seen


def test_training_passes_each_steps_latent_draw_to_the_model(latent_masked_run):
    from elt.config import load_config
    from elt.train.step import plan_step

    cfg_path, _, seen = latent_masked_run
    cfg = load_config(cfg_path)
    assert cfg.latent_range == (1, 3)
    drawn = [plan_step(cfg.train, s, cfg.latent_range).latents for s in range(cfg.train.steps)]
    assert seen == drawn and all(1 <= j <= 3 for j in drawn)  # one forward per step, at that step's J̃
    assert len(set(drawn)) > 1  # the draw moves (seed 0: not one value for all 4 steps)


def test_sample_latents_on_a_masked_run(latent_masked_run, tmp_path, monkeypatch, capsys):
    """`elt sample --latents J` on a masked run: J in the record, fewer GFLOPs; `--uncond-latents Jw`: the
    unconditional branch runs at Jw in its own call."""
    from elt.anytime import gflops_per_sample
    from elt.cli import main
    from elt.models import from_pretrained

    _, run, _ = latent_masked_run
    model, _ = from_pretrained(run)
    base = ["sample", str(run), "--loops", "2", "--per-class", "1", "--steps", "2", "--seed", "3",
            "--precision", "fp32"]
    assert main([*base, "--cfg", "1", "--out", str(tmp_path / "full.npz")]) == 0
    assert main([*base, "--cfg", "1", "--latents", "1", "--out", str(tmp_path / "one.npz")]) == 0
    full, one = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("full", "one"))
    assert full["latents"] is None and one["latents"] == 1 and one["uncond_latents"] is None
    assert one["gflops_per_sample"] == pytest.approx(gflops_per_sample(model, Budget(2, 1), 2, 1.0))
    assert one["gflops_per_sample"] < full["gflops_per_sample"]

    calls, forward = [], MaskedTransformer.forward

    def spy(self, tokens, y, loops, exits=None, latents=None):
        if len(tokens) > 1:  # sampling calls, not the FLOP counter's batch of 1
            calls.append((len(tokens), loops, latents, sorted(set(y.tolist()))))
        return forward(self, tokens, y, loops, exits, latents)

    monkeypatch.setattr(MaskedTransformer, "forward", spy)
    assert main([*base, "--cfg", "2", "--latents", "2", "--uncond-latents", "1",
                 "--out", str(tmp_path / "cheap.npz")]) == 0
    assert calls == [(3, 2, 2, [0, 1, 2]), (3, 2, 1, [3])] * 2  # per step: J=2, then the null label at Jw=1
    cheap = json.loads((tmp_path / "cheap.json").read_text())
    assert cheap["latents"] == 2 and cheap["uncond_latents"] == 1
    assert cheap["gflops_per_sample"] == pytest.approx(gflops_per_sample(model, Budget(2, 2), 2, 2.0, Budget(2, 1)))
    assert "latents=2, uncond_latents=1" in capsys.readouterr().out
