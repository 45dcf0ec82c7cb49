"""`elt eval SAMPLES.npz --classifier DIR --ref DATA`: class-consistency, FD-classifier and the real floor."""
import json

import numpy as np
import torch

from conftest import write_tiny_image_folder
from elt.cli import main
from elt.data import load_dataset
from elt.eval.classifier import save_classifier, train_classifier


def _classifier(data_dir, out):
    ds = load_dataset(str(data_dir), "train", image_size=8, channels=1)
    x, y = ds.get_batch(torch.arange(len(ds)))
    model, _ = train_classifier(x, y, x, y, epochs=10, batch_size=16, progress=False)
    save_classifier(model, out, {"data": str(data_dir)})
    return x, y


def test_eval_report_real_images_sit_at_the_floor_and_noise_far_above(tmp_path, capsys):
    data = write_tiny_image_folder(tmp_path / "data", per_class=30)
    x, y = _classifier(data, tmp_path / "cls")
    real = tmp_path / "real.npz"
    np.savez(real, arr_0=x.permute(0, 2, 3, 1).numpy(), arr_1=y.numpy())
    noise = tmp_path / "noise.npz"
    rng = np.random.default_rng(0)
    np.savez(noise, arr_0=rng.integers(0, 256, size=(len(y), 8, 8, 1), dtype=np.uint8), arr_1=y.numpy())

    reports = {}
    for name, path in (("real", real), ("noise", noise)):
        out = tmp_path / f"{name}.json"
        assert main(["eval", str(path), "--classifier", str(tmp_path / "cls"), "--ref", str(data),
                     "--out", str(out)]) == 0
        reports[name] = json.loads(out.read_text())
    r, n = reports["real"], reports["noise"]
    # the reference's own images sit at the real floor, class-consistency high; noise: far away, near chance
    assert r["class_consistency"]["accuracy"] > 0.9
    assert n["fd_classifier"] > 10 * max(r["fd_classifier"], r["fd_classifier_real_floor"])
    assert n["class_consistency"]["accuracy"] < 0.8
    assert "disjoint half" in r["protocol"]["floor"] and r["protocol"]["samples"] == len(y)
