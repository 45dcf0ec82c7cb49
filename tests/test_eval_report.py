"""`elt eval SAMPLES.npz --ref DATA`: distances with their real floors, precision/recall, IS, cached refs."""
import json

import numpy as np
import pytest
import torch

from conftest import write_tiny_image_folder
from elt.cli import main
from elt.data import DataError, load_dataset
from elt.eval.classifier import save_classifier, train_classifier
from elt.eval.report import QualityEvaluator

from test_inception import _StandIn


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_tiny_image_folder(root / "data", per_class=30)
    ds = load_dataset(str(data), "train", image_size=8, channels=1)
    x, y = ds.get_batch(torch.arange(len(ds)))
    model, _ = train_classifier(x, y, x, y, epochs=10, batch_size=16, progress=False)
    save_classifier(model, root / "cls", {"data": str(data)})
    torch.jit.script(_StandIn()).save(str(root / "inception.pt"))
    real = root / "real.npz"
    np.savez(real, arr_0=x.permute(0, 2, 3, 1).numpy(), arr_1=y.numpy())
    noise = root / "noise.npz"
    rng = np.random.default_rng(0)
    np.savez(noise, arr_0=rng.integers(0, 256, size=(len(y), 8, 8, 1), dtype=np.uint8), arr_1=y.numpy())
    return root, data


def test_real_images_sit_at_the_floor_and_noise_far_above(setup, monkeypatch):
    root, data = setup
    monkeypatch.setenv("ELT_CACHE", str(root / "cache"))
    reports = {}
    for name in ("real", "noise"):
        out = root / f"{name}.json"
        assert main(["eval", str(root / f"{name}.npz"), "--classifier", str(root / "cls"), "--ref", str(data),
                     "--inception", str(root / "inception.pt"), "--out", str(out)]) == 0
        reports[name] = json.loads(out.read_text())
    r, n = reports["real"], reports["noise"]
    for metric in ("fid", "fd_classifier"):
        assert n[metric] > 10 * max(r[metric], r[f"{metric}_real_floor"]), metric
    assert r["class_consistency"]["accuracy"] > 0.9 and n["class_consistency"]["accuracy"] < 0.8
    assert r["classifier_precision"] > 0.8 and n["classifier_precision"] < 0.2
    assert r["inception_score"][0] > 1.5 * n["inception_score"][0]
    assert set(r["classifier_pr_real_floor"]) == {"precision", "recall"}
    protocol = r["protocol"]
    assert "disjoint half" in protocol["inception"]["floor"] and protocol["samples"] == 90
    assert "299" in protocol["inception"]["features"]


def test_reference_features_are_cached_and_reused(setup, tmp_path, monkeypatch):
    root, data = setup
    calls = []
    imgs = np.load(root / "real.npz")
    for _ in range(2):
        ev = QualityEvaluator(str(data), ("inception",), inception=str(root / "inception.pt"),
                              cache_dir=tmp_path)
        net_embed = ev.spaces[0].embed
        ev.spaces[0].embed = lambda x, f=net_embed: (calls.append(len(x)), f(x))[1]
        first = ev.evaluate(imgs["arr_0"], imgs["arr_1"])
    assert len(list((tmp_path / "features").glob("inception-*.npy"))) == 2  # reference + floor set
    # first evaluator: reference, floor and samples embedded; second: samples only
    assert calls == [45, 45, 90, 90] and first["n"] == 90


def test_bad_requests_are_explained(setup, tmp_path):
    root, data = setup
    with pytest.raises(DataError, match="--classifier"):
        QualityEvaluator(str(data), ("classifier",))
    ev = QualityEvaluator(str(data), ("inception",), inception=str(root / "inception.pt"), cache_dir=tmp_path)
    with pytest.raises(DataError, match="uint8"):
        ev.evaluate(np.zeros((4, 8, 8, 1), np.float32), np.zeros(4))
    assert main(["eval", str(root / "real.npz")]) == 2  # neither --ref nor --classifier
