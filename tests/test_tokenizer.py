"""Tests for the VQ tokenizer (elt.tokenizers): quantizer, autoencoder, save/load, cache, trainer. CPU, fast."""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from elt.data import ArrayImageDataset
from elt.tokenizers import (
    TokenizerConfig,
    TokenizerError,
    VectorQuantizer,
    VQAutoencoder,
    evaluate_tokenizer,
    load_tokenizer,
    save_tokenizer,
    token_grids,
    tokenizer_fingerprint,
    train_tokenizer,
)
from elt.tokenizers import cache as tok_cache
from elt.tokenizers import train as tok_train
from elt.tokenizers.cli import add_tokenizer_parser
from stand_ins import StandIn

SMALL = {"base_channels": 8, "downsample": 1, "res_blocks": 1, "codebook_size": 16, "code_dim": 4}


def small_model(seed: int = 0, shape=(1, 8, 8), **kw) -> VQAutoencoder:
    torch.manual_seed(seed)
    return VQAutoencoder(TokenizerConfig(**{**SMALL, **kw}), shape)


def images(n: int = 6, shape=(1, 8, 8), seed: int = 0) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def uint8_dataset(n: int = 24, shape=(1, 8, 8), seed: int = 0) -> ArrayImageDataset:
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return ArrayImageDataset(imgs, torch.arange(n) % 2, ["a", "b"])


def quantizer_with(codebook: torch.Tensor, count: float, **kw) -> VectorQuantizer:
    """A quantizer whose EMA stats agree with `codebook`, every code at EMA count `count`."""
    q = VectorQuantizer(codebook.shape[0], codebook.shape[1], **kw)
    q.codebook.copy_(codebook)
    q.ema_count.fill_(count)
    q.ema_sum.copy_(codebook * count)
    return q


def as_map(vectors: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (1, D, 1, N), a 1 x N map of encoder outputs."""
    return vectors.t().reshape(1, vectors.shape[1], 1, vectors.shape[0]).contiguous()


# ---- quantizer ------------------------------------------------------------------------------------------
def test_straight_through_gradient_reaches_encoder():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    quantized, idx, _, _ = q(z, update=False)
    torch.testing.assert_close(quantized.detach(), q.lookup(idx))  # forward value is the code
    w = torch.randn_like(z)
    (quantized * w).sum().backward()
    torch.testing.assert_close(z.grad, w)  # d loss / d z = d loss / d quantized


def test_ema_moves_used_codes_and_leaves_unused_alone():
    codebook = torch.tensor([[0.0, 0.0], [4.0, 4.0], [-4.0, 4.0], [9.0, -9.0]])
    q = quantizer_with(codebook, count=10.0, decay=0.9, dead_threshold=1.0).train()
    z = torch.tensor([[1.0, 0.5], [0.6, 1.0], [3.0, 3.5]])  # two -> code 0, one -> code 1
    _, idx, _, stats = q(as_map(z))
    assert idx.flatten().tolist() == [0, 0, 1] and stats["restarts"] == 0
    counts = torch.tensor([2.0, 1.0, 0.0, 0.0])
    ema_count = 0.9 * 10 + 0.1 * counts
    n, eps = ema_count.sum(), q.eps
    smoothed = (ema_count + eps) / (n + 4 * eps) * n
    for k, members in ((0, z[:2]), (1, z[2:])):
        expect = (0.9 * 10 * codebook[k] + 0.1 * members.sum(0)) / smoothed[k]
        torch.testing.assert_close(q.codebook[k], expect)
        assert (q.codebook[k] - members.mean(0)).norm() < (codebook[k] - members.mean(0)).norm()
    torch.testing.assert_close(q.codebook[2:], codebook[2:], rtol=0, atol=0)  # unused codes untouched
    torch.testing.assert_close(q.ema_count, ema_count)
    torch.manual_seed(0)
    fresh = VectorQuantizer(8, 2, dead_threshold=0.0).train()  # no restarts: never-used codes keep their init
    init = fresh.codebook.clone()
    _, idx, _, _ = fresh(as_map(init[:2] + 0.01))
    unused = torch.ones(8, dtype=torch.bool)
    unused[idx.unique()] = False
    assert unused.sum() >= 6 and torch.equal(fresh.codebook[unused], init[unused])


def test_dead_codes_are_restarted_at_encoder_outputs():
    torch.manual_seed(0)
    codebook = torch.tensor([[0.0, 0.0], [5.0, 5.0], [50.0, 50.0], [-50.0, 50.0]])
    q = quantizer_with(codebook, count=10.0, decay=0.9, dead_threshold=1.0).train()
    q.ema_count[2] = 0.5  # code 2: dead (and too far away to be chosen)
    q.ema_sum[2] = codebook[2] * 0.5
    z = torch.tensor([[0.1, 0.2], [0.3, -0.1], [4.8, 5.1], [5.2, 4.9]])
    _, _, _, stats = q(as_map(z))
    assert stats["restarts"] == 1
    assert any(torch.equal(q.codebook[2], row) for row in z), "dead code not moved onto an encoder output"
    assert q.ema_count[2] == pytest.approx(1.0)
    torch.testing.assert_close(q.ema_sum[2], q.codebook[2])
    torch.testing.assert_close(q.codebook[3], codebook[3])  # alive though unused this batch: kept


def test_first_training_step_initialises_codebook_from_data():
    torch.manual_seed(0)
    q = VectorQuantizer(16, 3, dead_threshold=1.0).train()
    z = torch.randn(2, 3, 4, 4) * 0.01 + 7.0  # far from the N(0, 1) initial codes
    _, _, _, stats = q(z)
    assert stats["restarts"] >= 15
    assert (q.codebook - 7.0).abs().max() < 0.1


def test_eval_mode_and_encode_do_not_change_the_codebook():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 4).eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    _, _, _, stats = q(torch.randn(2, 4, 3, 3))
    assert stats["restarts"] == 0
    model = small_model().train()
    before_model = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    model.encode_unit(images())
    for ref, module in ((before, q), (before_model, model.quantizer)):
        for k, v in module.state_dict().items():
            assert torch.equal(v, ref[k]), k


def test_commitment_loss_hand_case():
    q = quantizer_with(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), count=10.0, commitment=0.25)
    z = torch.tensor([0.2, 0.4]).view(1, 2, 1, 1)
    _, idx, commit, stats = q(z, update=False)
    assert idx.item() == 0
    assert commit.item() == pytest.approx(0.25 * (0.2 ** 2 + 0.4 ** 2) / 2)
    assert stats["codes_used"] == 1 and stats["perplexity"] == pytest.approx(1.0)


# ---- autoencoder ----------------------------------------------------------------------------------------
def test_encode_decode_shapes_range_and_round_trip():
    model = small_model(shape=(1, 8, 8))
    model.train()(images(8))  # one training pass: codebook from data
    model.eval()
    x = images(5, seed=1)
    tokens = model.encode_unit(x)
    assert tokens.shape == (5, 4, 4) and tokens.dtype == torch.int64
    assert model.token_grid == (4, 4) and model.codebook_size == 16 and model.image_shape == (1, 8, 8)
    out = model.decode(tokens)
    assert out.shape == (5, 1, 8, 8)
    with torch.no_grad():
        recon, fwd_tokens, _, _ = model(x)
    assert torch.equal(tokens, fwd_tokens)
    torch.testing.assert_close(out, recon)
    grid = small_model(shape=(3, 16, 12), downsample=2)
    assert grid.encode_unit(images(2, (3, 16, 12))).shape == (2, 4, 3)


def test_clear_errors_for_bad_images_and_tokens():
    with pytest.raises(ValueError, match="downsample"):
        small_model(shape=(1, 10, 10), downsample=2)
    model = small_model()
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model.encode_unit(images(2, (1, 12, 12)))
    with pytest.raises(ValueError, match=r"0\.\.15"):
        model.decode(torch.full((1, 4, 4), 16))
    with pytest.raises(ValueError, match=r"0\.\.15"):
        model.decode(torch.full((1, 4, 4), -1))
    with pytest.raises(ValueError, match=r"\(B, 4, 4\)"):
        model.decode(torch.zeros(1, 3, 3, dtype=torch.long))


# ---- save / load ----------------------------------------------------------------------------------------
def test_save_load_round_trip_and_mismatch(tmp_path):
    model = small_model()
    model.train()(images(8))
    model.eval()
    cfg = model.cfg
    out = save_tokenizer(model, cfg, tmp_path / "tok", data={"name": "digits"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no temp folder left behind
    loaded = load_tokenizer(out)
    x = images(4, seed=3)
    assert torch.equal(loaded.encode_unit(x), model.encode_unit(x))
    assert tokenizer_fingerprint(loaded) == tokenizer_fingerprint(model)
    text = (out / "config.yaml").read_text().replace("codebook_size: 16", "codebook_size: 32")
    (out / "config.yaml").write_text(text)
    with pytest.raises(TokenizerError, match="do not match"):
        load_tokenizer(out)
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="model.safetensors"):
        load_tokenizer(tmp_path / "empty")


class NoDecode(nn.Module):
    def __init__(self):
        super().__init__()
        self.codebook_size = 16
        self.grid_h = 2
        self.grid_w = 2
        self.image_shape: tuple[int, int, int] = (1, 4, 4)

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 2, 2, dtype=torch.long)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)


def test_torchscript_tokenizer(tmp_path):
    path = tmp_path / "standin.pt"
    torch.jit.save(torch.jit.script(StandIn()), str(path))
    tok = load_tokenizer(path)
    assert tok.codebook_size == 16 and tok.token_grid == (2, 2) and tok.image_shape == (1, 4, 4)
    x = images(3, (1, 4, 4))
    tokens = tok.encode_unit(x)
    assert tokens.shape == (3, 2, 2) and tokens.dtype == torch.int64
    assert tok.decode(tokens).shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match=r"0\.\.15"):
        tok.decode(torch.full((1, 2, 2), 16))
    assert len(tokenizer_fingerprint(tok)) == 40
    bad = tmp_path / "nodecode.pt"
    torch.jit.save(torch.jit.script(NoDecode()), str(bad))
    with pytest.raises(TokenizerError, match="lacks decode"):
        load_tokenizer(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="neither a tokenizer folder nor a TorchScript file"):
        load_tokenizer(junk)


# ---- token cache ----------------------------------------------------------------------------------------
def test_token_cache_reused_and_invalidated(tmp_path, monkeypatch):
    model = small_model().eval()
    data = uint8_dataset(24)
    calls = []
    real = tok_cache.encode_dataset
    monkeypatch.setattr(tok_cache, "encode_dataset", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = token_grids(model, data, tmp_path, "digits/train", batch_size=10, progress=False)
    assert first.shape == (24, 4, 4) and first.dtype == torch.int64 and len(calls) == 1
    folders = list(tmp_path.glob("digits_train-*"))  # one code folder
    assert len(folders) == 1 and np.load(folders[0] / "codes.npy").dtype == np.int16
    again = token_grids(model, data, tmp_path, "digits/train", batch_size=10, progress=False)
    assert torch.equal(first, again) and len(calls) == 1  # read from the cache
    with torch.no_grad():
        model.encoder.net[0].weight.add_(0.5)  # "retrained" tokenizer
    token_grids(model, data, tmp_path, "digits/train", progress=False)
    assert len(calls) == 2
    token_grids(model, uint8_dataset(24, seed=1), tmp_path, "digits/train", progress=False)  # other data
    assert len(calls) == 3 and len(list(tmp_path.glob("digits_train-*"))) == 3
    relabelled = uint8_dataset(24, seed=1)
    relabelled.labels = 1 - relabelled.labels  # same images, other labels: the cached labels would be wrong
    codes = tok_cache.token_codes(model, relabelled, tmp_path, "digits/train", progress=False)
    assert len(calls) == 4 and torch.equal(codes.labels, relabelled.labels)
    assert torch.equal(codes.all_codes(), tok_cache.encode_dataset(model, relabelled, progress=False))
    assert not list(tmp_path.glob(".*"))  # no temp files left


# ---- trainer --------------------------------------------------------------------------------------------
def _offline_digits(monkeypatch, tmp_path):
    """Serve `digits` from the real scikit-learn if installed, else from a fake module with 8x8 strokes."""
    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))
    if importlib.util.find_spec("sklearn") is not None:
        return
    rng = np.random.default_rng(0)
    target = np.tile(np.arange(10), 30)
    imgs = np.zeros((len(target), 8, 8))
    for i, k in enumerate(target):
        imgs[i, 1:7, 1 + k % 5] = 16  # a vertical stroke whose column and length depend on the class
        imgs[i, 1 + k // 5 * 3, 1:7] = 12
        imgs[i] = np.clip(imgs[i] + rng.uniform(0, 3, (8, 8)), 0, 16)
    pkg, sub = types.ModuleType("sklearn"), types.ModuleType("sklearn.datasets")
    pkg.__spec__ = importlib.machinery.ModuleSpec("sklearn", None)  # torch._dynamo looks modules up
    sub.__spec__ = importlib.machinery.ModuleSpec("sklearn.datasets", None)
    pkg.__version__ = "fake"
    sub.load_digits = lambda: types.SimpleNamespace(images=imgs, target=target)
    pkg.datasets = sub
    monkeypatch.setitem(sys.modules, "sklearn", pkg)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", sub)


TINY_TRAIN = {**SMALL, "steps": 40, "batch_size": 32, "lr": 3e-3, "warmup_steps": 5, "log_every": 10}


def test_train_tokenizer_end_to_end_on_digits(tmp_path, monkeypatch, capsys):
    _offline_digits(monkeypatch, tmp_path)
    out = tmp_path / "runs" / "tok"
    metrics = train_tokenizer(TokenizerConfig(**TINY_TRAIN), "digits", out, progress=False)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tok"]
    for name in ("config.yaml", "model.safetensors", "metrics.json", "recon.png", "log.jsonl"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(saved["psnr"]) and saved["perplexity"] > 1 and saved["split"] == "test"
    assert saved["steps"] == 40
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    assert log[-1]["recon"] < log[0]["recon"] / 2  # it learns
    assert {"loss", "recon", "commit", "psnr", "perplexity", "codes_used", "restarts", "dead_codes"} <= set(log[0])
    tok = load_tokenizer(out)
    assert tok.token_grid == (4, 4) and tok.image_shape == (1, 8, 8)
    assert metrics["psnr"] == pytest.approx(saved["psnr"])
    # the CLI evaluates the folder on the data it was trained on
    parser = argparse.ArgumentParser()
    add_tokenizer_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tokenizer", "eval", str(out), "--out", str(tmp_path / "report.json"), "--no-progress"])
    args.func(args)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["data"] == "digits" and report["psnr"] == pytest.approx(saved["psnr"], abs=1e-4)
    assert "PSNR" in capsys.readouterr().out
    with pytest.raises(TokenizerError, match="already exists"):
        train_tokenizer(TokenizerConfig(**TINY_TRAIN), "digits", out, progress=False)


def test_interrupted_training_leaves_nothing_loadable(tmp_path, monkeypatch):
    _offline_digits(monkeypatch, tmp_path)

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tok_train, "evaluate_tokenizer", interrupt)
    out = tmp_path / "runs" / "tok"
    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(TokenizerConfig(**{**TINY_TRAIN, "steps": 2}), "digits", out, progress=False)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_evaluate_tokenizer_counts_usage():
    model = small_model().eval()
    data = uint8_dataset(12)
    m = evaluate_tokenizer(model, data, batch_size=5)
    assert m["images"] == 12
    tokens = model.encode_unit(data.images.float() / 127.5 - 1)
    assert m["codes_used"] == len(tokens.unique())
    recon = (model.decode(tokens) + 1) / 2
    mse = (recon - data.images.float() / 255).pow(2).flatten(1).mean(1)
    assert m["psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-4)


def test_training_is_deterministic_from_the_seed(tmp_path, monkeypatch):
    _offline_digits(monkeypatch, tmp_path)
    cfg = TokenizerConfig(**{**TINY_TRAIN, "steps": 6})
    a = train_tokenizer(cfg, "digits", tmp_path / "a", progress=False)
    b = train_tokenizer(cfg, "digits", tmp_path / "b", progress=False)
    fingerprints = {tokenizer_fingerprint(load_tokenizer(tmp_path / name)) for name in ("a", "b")}
    assert len(fingerprints) == 1
    assert a["psnr"] == b["psnr"]
    # batches 0-4 of 8 over 20 images: each epoch (20 positions) visits every image exactly once
    stream = torch.cat([tok_train.batch_indices(s, 8, 20, seed=1) for s in range(5)])
    assert sorted(stream[:20].tolist()) == list(range(20)) and sorted(stream[20:].tolist()) == list(range(20))
    assert stream[:20].tolist() != stream[20:].tolist()  # a new order each epoch
    assert tok_train.batch_indices(3, 8, 20, seed=1).tolist() != tok_train.batch_indices(3, 8, 20, seed=2).tolist()


def test_a_run_with_a_torchscript_tokenizer_says_it_runs_a_program(tmp_path, capsys):
    from elt.config import load_config
    from elt.family.masked import run_tokenizer

    run = tmp_path / "run"
    (run / "tokenizer").mkdir(parents=True)
    torch.jit.save(torch.jit.script(StandIn()), str(run / "tokenizer" / "tokenizer.pt"))
    cfg = load_config(None, ["family=masked", "objective.kind=maskgit", "model.codebook_size=16",
                             "tokenizer.codebook_size=16", "model.grid=2", "model.image_size=4",
                             "tokenizer.downsample=1", "sample.steps=4"])
    tok = run_tokenizer(run, cfg)
    assert tok.codebook_size == 16
    err = capsys.readouterr().err
    assert "elt: note:" in err and "TorchScript tokenizer, a program that runs when loaded" in err
