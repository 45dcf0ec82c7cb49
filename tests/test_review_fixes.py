"""Fidelity fixes: the λ a run ends at, `elt anytime` on a baseline run, the anytime table script, and the
masked family's class-token conditioning (MaskGIT's) beside adaLN."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from elt.cli import main
from elt.config import ConfigError
from elt.models.masked import MaskedModelConfig, MaskedTransformer
from elt.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


# ---- λ when a run stops on its time budget ----------------------------------------------------------------------

def test_time_limited_ilsd_run_warns_and_records_lambda(make_config, tiny_dataset, tmp_path, capsys, monkeypatch):
    cfg = make_config("train.steps=20", "train.max_minutes=0.001")
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    clock = iter(range(0, 10_000, 1))  # one fake second per perf_counter call: the budget (0.06 s) ends at once
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
    summary = trainer.fit()
    assert summary["stop"] == "max_minutes" and summary["step"] < 20
    expected = 1 - (summary["step"] - 1) / 20  # λ of the last step trained (linear 1 -> 0 over 20 steps)
    assert summary["lambda_end"] == pytest.approx(expected)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["lambda_end"] == pytest.approx(expected)
    err = capsys.readouterr().err
    assert "warning: stopped by train.max_minutes" in err and f"λ = {expected:.3f}" in err


def test_complete_ilsd_run_ends_at_lambda_zero_without_warning(make_config, tiny_dataset, tmp_path, capsys):
    summary = Trainer(make_config("train.steps=4"), tmp_path / "run", progress=False).fit()
    assert summary["stop"] == "steps" and summary["lambda_end"] == pytest.approx(1 - 3 / 4)
    assert "warning" not in capsys.readouterr().err
    summary = Trainer(make_config("train.steps=4", "train.lambda_decay=0.5"), tmp_path / "run2",
                      progress=False).fit()
    assert summary["lambda_end"] == 0.0


# ---- elt anytime on a baseline run -------------------------------------------------------------------------------

def test_anytime_on_a_baseline_run_samples_its_single_depth(tiny_cfg_dict, tmp_path, capsys):
    cfg = tiny_cfg_dict()
    cfg["train"]["mode"] = "baseline"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "c.yaml"), "train.steps=2", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["anytime", str(run), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "columns: loops [1]" in out and "note:" not in out
    assert main(["anytime", str(run), "--out", str(tmp_path / "b"), "--max-loops", "2"]) == 0
    out = capsys.readouterr().out
    assert "columns: loops [1, 2]" in out and "note:" in out and "never trained at" in out


# ---- the anytime table script reads today's anytime.json ----------------------------------------------------------

@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "results").rglob(
    "anytime.json")))
def test_anytime_table_reads_committed_results(path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "anytime_table.py"), str(ROOT / path)],
                         check=True, capture_output=True, text=True).stdout
    runs = json.loads((ROOT / path).read_text())["runs"]
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| run ")]
    assert len(rows) == sum(len(r["results"]) for r in runs)
    first = runs[0]["results"][0]
    assert f"{100 * first['class_consistency']:.1f}%" in rows[0]
    assert "protocol:" in out


# ---- masked family: class token vs adaLN -------------------------------------------------------------------------

def _masked(conditioning: str, seed: int = 0) -> MaskedTransformer:
    torch.manual_seed(seed)
    m = MaskedTransformer(MaskedModelConfig(dim=32, heads=2, blocks=2, grid=3, codebook_size=8, num_classes=3,
                                            conditioning=conditioning))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return m


def test_token_conditioning_puts_the_label_in_the_sequence_not_the_modulation():
    tokens = torch.randint(0, 9, (4, 9), generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    for conditioning in ("adaln", "token"):
        m = _masked(conditioning)
        logits = m(tokens, y, loops=2)
        assert logits.shape == (4, 9, 8)
        assert not torch.allclose(logits[0], m(tokens, torch.tensor([1, 1, 2, 3]), loops=2)[0])  # label matters
        with torch.no_grad():  # the label embedding reaches the modulations only under adaLN conditioning
            mods = [blk.modulation(m.y_embed(y)) for blk in m.core.blocks]
        varies = any(not torch.allclose(t[0], t[1]) for mod in mods for t in mod)
        assert varies == (conditioning == "adaln"), conditioning


def test_token_conditioning_has_maskgits_parameter_count_and_reads_old_checkpoints():
    """With a class token the blocks' and head's modulations are learned constants: no adaLN weight matrices
    (6·d² per block, 2·d² in the head) that would never get a gradient; a state dict saved when they still
    existed (Sequential(SiLU, Linear) at c = 0, so only the bias mattered) loads and gives the same logits."""
    from torch import nn

    adaln, token = _masked("adaln"), _masked("token")
    d, n = 32, 2
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(adaln) - count(token) == n * 6 * d * d + 2 * d * d
    old = {k: v for k, v in token.state_dict().items()}
    for key in [k for k in old if k.endswith("ada.bias")]:  # the old layout: ada.1.weight, ada.1.bias
        width = old[key].numel()
        old[key.replace("ada.bias", "ada.1.bias")] = old.pop(key)
        old[key.replace("ada.bias", "ada.1.weight")] = torch.randn(width, d)  # dead at c = 0
    reloaded = _masked("token", seed=5)
    reloaded.load_state_dict(old)
    tokens = torch.randint(0, 9, (2, 9), generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 2])
    torch.testing.assert_close(reloaded(tokens, y, loops=2), token(tokens, y, loops=2))
    # and the constant modulation is what the old layer computed at c = 0
    lin = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
    with torch.no_grad():
        lin[1].bias.copy_(token.core.blocks[0].ada.bias)
    c = torch.zeros(2, d)
    torch.testing.assert_close(token.core.blocks[0].ada(c), lin(c))


def test_token_conditioning_class_token_is_attended_to_and_dropped_from_the_output():
    m = _masked("token")
    tokens = torch.randint(0, 9, (2, 9), generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1])
    # the class token is position 0 of the core's input: the logits of token 0 are not those of the class token
    seen = []
    handle = m.core.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    m(tokens, y, loops=1)
    handle.remove()
    assert seen == [(2, 10, 32)]
    with pytest.raises(ValueError, match="conditioning"):
        MaskedModelConfig(conditioning="prefix").validate()


def test_conditioning_key_is_checked_in_configs():
    from elt.config import load_config

    with pytest.raises(ConfigError, match="model.conditioning must be 'adaln' or 'token'"):
        load_config(ROOT / "configs" / "mnist_masked.yaml", ["model.conditioning=cls"])
    assert load_config(ROOT / "configs" / "mnist_masked.yaml", ["model.conditioning=token"]).model.conditioning \
        == "token"
