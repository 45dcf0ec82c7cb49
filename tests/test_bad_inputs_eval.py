"""Bad input on the sampling / evaluation side (`elt sample`, `elt anytime`, `elt eval`): one row per bad input.

Every row runs `elt.cli.main` in-process and checks: exit code 2; stderr is exactly one line starting with
`elt: error:`; the message names the problem and the fix (a regex per row); and nothing on disk was lost,
changed or left half-written (the shared inputs and the row's own folder are snapshotted, bytes and mtimes,
before and after).
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from conftest import tree_snapshot, write_tiny_image_folder
from elt.cli import main

CLASSIFIER_SIZE = ["--image-size", "8", "--channels", "1"]


@dataclass
class World:
    """Inputs shared (read-only) by every row: a trained run, classifiers, a good samples file, data."""
    root: Path
    run: Path
    cls: Path  # 3 classes, 8×8 grey, its record holds image_shape
    cls2: Path  # 2 classes
    cls_norecord: Path  # like cls, without the recorded image_shape
    data: Path  # train/ and test/ image folders
    good: Path  # samples .npz written by `elt sample` (6 grey 8×8 images, labels 0 0 1 1 2 2)
    lrun: Path  # a run with a latent interface, 3 latents per group

    @property
    def images(self) -> np.ndarray:
        return np.load(self.good)["arr_0"]

    @property
    def labels(self) -> np.ndarray:
        return np.load(self.good)["arr_1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_cfg_dict) -> World:
    root = tmp_path_factory.mktemp("bad_eval_inputs")
    cache = tmp_path_factory.mktemp("bad_eval_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("ELT_CACHE", str(cache))
    try:
        cfg = root / "tiny.yaml"
        cfg.write_text(yaml.safe_dump(tiny_cfg_dict()))
        run = root / "run"
        assert main(["train", str(cfg), "train.steps=2", "--out", str(run), "--no-progress"]) == 0
        latent = tiny_cfg_dict()
        latent["model"] |= {"patch": 2, "latent": {"window": [2, 2], "latents_per_group": 3}}
        (root / "latent.yaml").write_text(yaml.safe_dump(latent))
        assert main(["train", str(root / "latent.yaml"), "train.steps=2", "--out", str(root / "lrun"),
                     "--no-progress"]) == 0
        data, data2 = root / "data", root / "data2"
        write_tiny_image_folder(data / "train")
        write_tiny_image_folder(data / "test", per_class=4)
        write_tiny_image_folder(data2 / "train", num_classes=2)
        write_tiny_image_folder(data2 / "test", num_classes=2, per_class=4)
        for d, out in ((data, root / "cls"), (data2, root / "cls2")):
            assert main(["eval", "train-classifier", str(d), "--out", str(out), "--epochs", "1",
                         *CLASSIFIER_SIZE]) == 0
        norecord = root / "cls_norecord"
        shutil.copytree(root / "cls", norecord)
        meta = json.loads((norecord / "classifier.json").read_text())
        del meta["image_shape"]
        (norecord / "classifier.json").write_text(json.dumps(meta))
        good = root / "good.npz"
        assert main(["sample", str(run), "--out", str(good), "--per-class", "2", "--steps", "1",
                     "--precision", "fp32"]) == 0
    finally:
        mp.undo()
    return World(root, run, root / "cls", root / "cls2", norecord, data, good, root / "lrun")


# ---- helpers that build a row's bad input inside the row's own folder --------------------------------------------

def _npz(tmp: Path, **arrays) -> Path:
    path = tmp / "samples.npz"
    np.savez(path, **arrays)
    return path


def _bytes(tmp: Path, name: str, data: bytes) -> Path:
    (tmp / name).write_bytes(data)
    return tmp / name


def _text(tmp: Path, name: str, text: str) -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _old_file(tmp: Path, name: str) -> Path:
    """An existing output file that a failing command must leave alone."""
    return _bytes(tmp, name, b"an earlier result")


def _eval(w: World, npz: Path, tmp: Path, *extra) -> list:
    return ["eval", npz, "--classifier", w.cls, "--out", tmp / "report.json", *extra]


def _sample(w: World, tmp: Path, *extra) -> list:
    return ["sample", w.run, "--per-class", "1", "--steps", "1", *extra]


def _lsample(w: World, tmp: Path, *extra) -> list:
    return ["sample", w.lrun, "--per-class", "1", "--steps", "1", "--out", tmp / "x.npz", *extra]


def _bad_classifier(w: World, tmp: Path, change: Callable[[Path], object]) -> list:
    d = tmp / "cls"
    shutil.copytree(w.cls, d)
    change(d)
    return ["eval", w.good, "--classifier", d, "--out", tmp / "report.json"]


def _anytime_json(tmp: Path, text: str) -> list:
    return ["anytime", _text(tmp, "anytime.json", text), "--out", tmp / "overlay"]


def _row(runs: list[dict]) -> str:
    return json.dumps({"runs": runs})


GOOD_ROW = {"loops": 1, "steps": 1, "gflops_per_sample": 0.1, "class_consistency": 0.5}
WEIGHTS, META = "classifier.safetensors", "classifier.json"
RETRAIN = r"train it again with `elt eval train-classifier DATA --out"
REWRITE = r"write it with `elt sample"
JSON_FIX = r"pass an anytime\.json written by `elt anytime RUN_DIR --eval"


@dataclass
class Row:
    id: str
    build: Callable[[World, Path], list]  # (world, the row's folder) -> argv; may create bad inputs there
    message: str  # regex: the problem and the fix


ROWS = [
    # ---- flags of `elt sample` / `elt anytime` / `elt eval` -----------------------------------------------------
    Row("sample --cfg nan", lambda w, t: _sample(w, t, "--cfg", "nan", "--out", _old_file(t, "x.npz")),
        r"--cfg must be a finite guidance scale .*got nan"),
    Row("sample --cfg inf", lambda w, t: _sample(w, t, "--cfg", "inf", "--out", _old_file(t, "x.npz")),
        r"--cfg must be a finite guidance scale .*got inf"),
    Row("sample --cfg=-inf", lambda w, t: _sample(w, t, "--cfg=-inf", "--out", t / "x.npz"),
        r"--cfg must be a finite guidance scale .*got -inf"),
    Row("sample --cfg 1e308", lambda w, t: _sample(w, t, "--cfg", "1e308", "--out", t / "x.npz"),
        r"--cfg must be a finite guidance scale with \|--cfg\| <= 100"),
    Row("anytime --cfg nan", lambda w, t: ["anytime", w.run, "--cfg", "nan", "--out", t / "any", "--steps", "1",
                                           "--max-loops", "1"],
        r"--cfg must be a finite guidance scale"),
    Row("sample --out without .npz", lambda w, t: _sample(w, t, "--out", t / "samples"),
        r"--out \S*samples does not end in \.npz: name a file ending in \.npz, e\.g\. \S*samples\.npz"),
    Row("sample --out names a folder", lambda w, t: _sample(w, t, "--out", _mkdir(t / "outdir")),
        r"--out \S*outdir is a folder: name a file ending in \.npz"),
    Row("sample --out names a folder x.npz", lambda w, t: _sample(w, t, "--out", _mkdir(t / "x.npz")),
        r"--out \S*x\.npz is a folder: name a file ending in \.npz"),
    Row("sample --out under a file", lambda w, t: _sample(w, t, "--out", _old_file(t, "f") / "x.npz"),
        r"\S*f is a file, not a folder: choose another path"),
    Row("sample --grid without .png", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--grid", t / "grid"),
        r"--grid \S*grid does not end in \.png: name a file ending in \.png"),
    Row("sample --grid names a folder", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--grid",
                                                             _mkdir(t / "g.png")),
        r"--grid \S*g\.png is a folder: name a file ending in \.png"),
    Row("sample --seed -1", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--seed=-1"),
        r"--seed must be an integer in 0\.\.4294967295, got -1"),
    Row("sample --seed 2**70", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--seed", str(2**70)),
        r"--seed must be an integer in 0\.\.4294967295"),
    Row("sample --uncond-loops 0", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--cfg", "2",
                                                        "--uncond-loops", "0"),
        r"--uncond-loops must be an integer loop count >= 1, got 0"),
    Row("sample --uncond-loops -1", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--cfg", "2",
                                                         "--uncond-loops=-1"),
        r"--uncond-loops must be an integer loop count >= 1, got -1"),
    Row("sample --uncond-loops 1.5", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--cfg", "2",
                                                          "--uncond-loops", "1.5"),
        r"--uncond-loops must be an integer loop count >= 1, got '1\.5'"),
    Row("sample --uncond-loops without guidance", lambda w, t: _sample(w, t, "--out", _old_file(t, "x.npz"),
                                                                       "--cfg", "1", "--uncond-loops", "1"),
        r"--uncond-loops 1 sets the loop count of guidance's unconditional branch, but guidance is off \(cfg 1\): "
        r"pass --cfg"),
    Row("sample --num-samples 0", lambda w, t: ["sample", w.run, "--num-samples", "0", "--steps", "1", "--out",
                                                t / "x.npz"],
        r"--num-samples must be >= 1 \(the number of samples\), got 0"),
    Row("sample --chunk 0", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--chunk", "0"),
        r"--chunk must be >= 1, got 0"),
    Row("sample over chunks of another request", lambda w, t: _sample(
        w, t, "--out", t / "x.npz", _text(_mkdir(t / "x.parts"), "request.json", '{"seed": 99}') and "--seed=0"),
        r"\S*x\.parts holds chunks of another sampling request .*: delete that folder, or rerun the command that "
        r"made it"),
    Row("sample --out beside a foreign x.parts", lambda w, t: _sample(
        w, t, "--out", t / "x.npz", _text(_mkdir(t / "x.parts"), "notes.txt", "mine") and "--seed=0"),
        r"\S*x\.parts exists and is not a chunk folder of elt sample: move it away or choose another --out"),
    Row("sample --latents 0", lambda w, t: _lsample(w, t, "--latents", "0"),
        r"--latents must be an integer in 1\.\.3 \(the model's latents per group\), got 0"),
    Row("sample --latents above J_max", lambda w, t: _lsample(w, t, "--latents", "4"),
        r"--latents must be an integer in 1\.\.3 \(the model's latents per group\), got 4"),
    Row("sample --uncond-latents above J_max", lambda w, t: _lsample(w, t, "--cfg", "2", "--uncond-latents", "9"),
        r"--uncond-latents must be an integer in 1\.\.3 \(the model's latents per group\), got 9"),
    Row("sample --latents on a plain run", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--latents", "1"),
        r"this run has no latent interface \(model\.latent\): drop --latents"),
    Row("sample --uncond-latents on a plain run", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--cfg", "2",
                                                                       "--uncond-latents", "1"),
        r"this run has no latent interface \(model\.latent\): drop --uncond-latents"),
    Row("sample --uncond-latents without guidance", lambda w, t: _lsample(w, t, "--cfg", "1", "--uncond-latents",
                                                                          "1"),
        r"--uncond-latents 1 sets the latents of guidance's unconditional branch, but guidance is off \(cfg 1\): "
        r"pass --cfg"),
    Row("sample --latents per step, wrong count", lambda w, t: _lsample(w, t, "--steps", "2", "--latents", "1,2,3"),
        r"--latents with one count per step needs 2 values \(the sampling steps\), got 3: pass --steps 3 or a "
        r"single latent count"),
    Row("sample --latents per step, one out of range", lambda w, t: _lsample(w, t, "--steps", "2", "--latents",
                                                                             "1,7"),
        r"--latents must be an integer in 1\.\.3 \(the model's latents per group\), got 7"),
    Row("sample --uncond-latents with per-step latents", lambda w, t: _lsample(w, t, "--steps", "2", "--cfg", "2",
                                                                               "--latents", "1,2",
                                                                               "--uncond-latents", "1"),
        r"--uncond-latents with a per-step budget needs a fixed --uncond-loops LW"),
    Row("sample --guidance bogus", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--cfg", "2", "--guidance",
                                                        "bogus"),
        r"--guidance must be one of cfg, ccfg, autoguidance, got 'bogus'"),
    Row("sample --guidance ccfg without a smaller budget", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--cfg",
                                                                                "2", "--guidance", "ccfg"),
        r"--guidance ccfg runs the unconditional branch at a smaller budget: give that budget with --uncond-loops "
        r"LW and/or --uncond-latents JW"),
    Row("sample --guidance autoguidance at the same budget", lambda w, t: _sample(w, t, "--out", t / "x.npz",
                                                                                  "--cfg", "2", "--loops", "2",
                                                                                  "--uncond-loops", "2",
                                                                                  "--guidance", "autoguidance"),
        r"--guidance autoguidance guides the model with a smaller budget of itself .*give that budget with "
        r"--uncond-loops LW"),
    Row("sample --guidance autoguidance without guidance", lambda w, t: _sample(w, t, "--out", t / "x.npz", "--cfg",
                                                                                "1", "--guidance", "autoguidance"),
        r"--guidance autoguidance mixes in a guiding branch, but guidance is off \(cfg 1\): pass --cfg"),
    Row("anytime --latents-list without --eval", lambda w, t: ["anytime", w.lrun, "--out", t / "any",
                                                               "--latents-list", "1"],
        r"--latents-list sweeps latent budgets for --eval; add --eval"),
    Row("anytime --latents-list on a plain run", lambda w, t: ["anytime", w.run, "--out", t / "any", "--classifier",
                                                               w.cls, "--latents-list", "1", "--steps", "1"],
        r"has no latent interface \(model\.latent\), so --latents-list / --uncond-latents do not apply: sweep it "
        r"in its own `elt anytime` call"),
    Row("anytime --latents-list above J_max", lambda w, t: ["anytime", w.lrun, "--out", t / "any", "--classifier",
                                                            w.cls, "--latents-list", "1", "9", "--steps", "1"],
        r"--latents-list values must be integers in 1\.\.3 \(the latents per group of \S+\), got 9"),
    Row("anytime --guidance ccfg without a smaller budget", lambda w, t: ["anytime", w.run, "--out", t / "any",
                                                                          "--steps", "1", "--cfg", "2",
                                                                          "--guidance", "ccfg"],
        r"--guidance ccfg runs the unconditional branch at a smaller budget"),
    Row("anytime --uncond-loops without guidance", lambda w, t: ["anytime", w.run, "--out", t / "any", "--steps",
                                                                 "1", "--max-loops", "1", "--cfg", "1",
                                                                 "--uncond-loops", "1"],
        r"--uncond-loops 1 sets the loop count of guidance's unconditional branch, but guidance is off"),
    Row("anytime --uncond-loops 0", lambda w, t: ["anytime", w.run, "--out", t / "any", "--steps", "1",
                                                  "--max-loops", "1", "--cfg", "2", "--uncond-loops", "0"],
        r"--uncond-loops must be an integer loop count >= 1, got 0"),
    Row("anytime --out is a file", lambda w, t: ["anytime", w.run, "--out", _old_file(t, "any"), "--steps", "1"],
        r"--out \S*any is a file: pass a folder"),
    Row("anytime --out holds a folder anytime.json",
        lambda w, t: ["anytime", _text(t, "in.json", _row([{"name": "a", "results": [GOOD_ROW]}])),
                      "--out", _mkdir(t / "o" / "anytime.json").parent],
        r"holds a folder named anytime\.json.*move it away or choose another --out"),
    Row("anytime --per-class 0", lambda w, t: ["anytime", w.run, "--out", t / "any", "--classifier", w.cls,
                                               "--per-class", "0", "--steps", "1", "--max-loops", "1"],
        r"--per-class must be >= 1, got 0"),
    Row("anytime --steps-list 0", lambda w, t: ["anytime", w.run, "--out", t / "any", "--classifier", w.cls,
                                                "--steps-list", "0", "--max-loops", "1"],
        r"--steps-list must be >= 1, got 0"),
    Row("anytime --classifier missing", lambda w, t: ["anytime", w.run, "--out", t / "any", "--classifier",
                                                      t / "nocls", "--steps", "1", "--max-loops", "1"],
        r"no trained classifier in .*run `elt eval train-classifier`"),
    Row("anytime --classifier knows fewer classes", lambda w, t: ["anytime", w.run, "--out", t / "any",
                                                                  "--classifier", w.cls2, "--steps", "1",
                                                                  "--max-loops", "1", "--per-class", "1"],
        r"samples 3 classes but the classifier \S+ knows 2: pass a classifier trained on the run's data set"),
    Row("eval --out names a folder", lambda w, t: _eval(w, w.good, t, "--out", _mkdir(t / "rep")),
        r"--out \S*rep is a folder: name a file ending in \.json instead, e\.g\. \S*report\.json"),
    Row("eval --out under a file", lambda w, t: _eval(w, w.good, t, "--out", _old_file(t, "f") / "r.json"),
        r"\S*f is a file, not a folder: choose another path"),
    Row("eval --out is the samples file", lambda w, t: _eval(w, w.good, t, "--out", w.good),
        r"--out \S*\.npz does not end in \.json: name a file ending in \.json"),
    Row("eval --seed -1", lambda w, t: _eval(w, w.good, t, "--seed=-1"), r"--seed must be an integer in 0\.\."),
    Row("eval SAMPLES DATA (stray word)", lambda w, t: ["eval", w.good, w.data, "--classifier", w.cls],
        r"unexpected argument .*DATA is only for `elt eval train-classifier`; pass reference data as --ref"),
    Row("train-classifier --epochs 0", lambda w, t: ["eval", "train-classifier", w.data, "--out", t / "c",
                                                     "--epochs", "0", *CLASSIFIER_SIZE],
        r"--epochs must be >= 1, got 0"),
    Row("train-classifier --image-size 2", lambda w, t: ["eval", "train-classifier", w.data, "--out", t / "c",
                                                         "--image-size", "2", "--channels", "1"],
        r"images of 2×2 are too small for the classifier: pass --image-size 4 or more"),
    Row("train-classifier --out is a file", lambda w, t: ["eval", "train-classifier", w.data, "--out",
                                                          _old_file(t, "c"), *CLASSIFIER_SIZE],
        r"--out \S*c is a file: pass a folder"),
    # ---- samples .npz files (`elt eval SAMPLES.npz`) -----------------------------------------------------------
    Row("npz labels above the classes", lambda w, t: _eval(w, _npz(t, arr_0=w.images, arr_1=w.labels + 5), t),
        r"labels 5, 6, 7 are outside the classifier's classes 0\.\.2: score the samples with a classifier "
        r"trained on their data set"),
    Row("npz negative labels", lambda w, t: _eval(w, _npz(t, arr_0=w.images, arr_1=w.labels - 1), t),
        r"labels -1 are outside the classifier's classes 0\.\.2"),
    Row("npz labels out of range, --ref path",
        lambda w, t: _eval(w, _npz(t, arr_0=w.images, arr_1=w.labels + 5), t, "--ref", w.data,
                           "--features", "classifier"),
        r"labels 5, 6, 7 are outside the classifier's classes"),
    Row("npz float labels", lambda w, t: _eval(w, _npz(t, arr_0=w.images, arr_1=w.labels + 0.5), t),
        r"arr_1 \(labels\) is float64; it must hold integer class ids .*astype\(np\.int64\)"),
    Row("npz 2-d labels", lambda w, t: _eval(w, _npz(t, arr_0=w.images, arr_1=w.labels[:, None]), t),
        r"arr_1 \(labels\) has shape \(6, 1\); it must hold one class id per image, shape \(6,\)"),
    Row("npz zero samples", lambda w, t: _eval(w, _npz(t, arr_0=w.images[:0], arr_1=w.labels[:0]), t),
        r"holds no samples \(arr_0 is empty\): write some with `elt sample"),
    Row("npz truncated", lambda w, t: _eval(w, _bytes(t, "cut.npz", w.good.read_bytes()[:300]), t),
        r"cut\.npz is not a readable \.npz archive .*truncated.*" + REWRITE),
    Row("npz garbage bytes", lambda w, t: _eval(w, _bytes(t, "junk.npz", b"not a zip archive at all" * 8), t),
        r"junk\.npz is not a readable \.npz archive \(not a zip archive\).*" + REWRITE),
    Row("npz empty file", lambda w, t: _eval(w, _bytes(t, "empty.npz", b""), t),
        r"empty\.npz is not a readable \.npz archive"),
    Row("npz is a .npy array", lambda w, t: _eval(w, _npy(t, w.images), t),
        r"holds a single array, not a \.npz with arr_0 \(images\) and arr_1 \(labels\)"),
    Row("npz object dtype", lambda w, t: _eval(w, _npz(t, arr_0=np.array([w.images, 1], dtype=object),
                                                        arr_1=w.labels), t),
        r"arr_0 is an object \(pickled\) array, which is never loaded: save plain arrays \(uint8 images"),
    Row("npz float images", lambda w, t: _eval(w, _npz(t, arr_0=w.images / 255.0, arr_1=w.labels), t),
        r"arr_0 \(images\) is float64; it must be uint8 pixels 0\.\.255 .*astype\(np\.uint8\)"),
    Row("npz arr_0/arr_1 length mismatch", lambda w, t: _eval(w, _npz(t, arr_0=w.images, arr_1=w.labels[:5]), t),
        r"arr_0 holds 6 images but arr_1 5 labels: there must be one label per image"),
    Row("npz without arr_0", lambda w, t: _eval(w, _npz(t, arr_1=w.labels), t),
        r"lacks arr_0 \(arr_0: images, arr_1: labels.*" + REWRITE),
    Row("npz without arr_1", lambda w, t: _eval(w, _npz(t, arr_0=w.images), t), r"lacks arr_1 .*" + REWRITE),
    Row("npz 2-d images", lambda w, t: _eval(w, _npz(t, arr_0=w.images[:, 0, :, 0], arr_1=w.labels), t),
        r"arr_0 \(images\) has shape \(6, 8\); it must be N×H×W×C"),
    Row("npz RGB samples, grey classifier",
        lambda w, t: _eval(w, _npz(t, arr_0=np.repeat(w.images, 3, -1), arr_1=w.labels), t),
        r"images have 3 channel\(s\) \(RGB\) but the classifier takes 1 \(grey\): train a classifier on data of "
        r"that shape .*--channels"),
    Row("npz images other size than the classifier's",
        lambda w, t: _eval(w, _npz(t, arr_0=np.zeros((6, 16, 16, 1), np.uint8), arr_1=w.labels), t),
        r"images are 16×16 but the classifier was trained on 8×8 images: train a classifier .*--image-size"),
    Row("npz images too small for the classifier",
        lambda w, t: _eval(w, _npz(t, arr_0=np.zeros((6, 2, 2, 1), np.uint8), arr_1=w.labels), t,
                           "--classifier", w.cls_norecord),
        r"images are 2×2, smaller than the classifier can take \(4×4 at least\): train a classifier"),
    Row("npz path is a folder", lambda w, t: _eval(w, _mkdir(t / "s.npz"), t),
        r"s\.npz is a folder, not a samples file: pass a \.npz written by `elt sample`"),
    Row("npz missing", lambda w, t: _eval(w, t / "nope.npz", t), r"nope\.npz does not exist: pass a \.npz"),
    # ---- anytime.json files (`elt anytime TABLE.json`) ---------------------------------------------------------
    Row("json not JSON", lambda w, t: _anytime_json(t, "{not json"),
        r"anytime\.json is not valid JSON \(.*line 1.*\): " + JSON_FIX),
    Row("json not UTF-8", lambda w, t: ["anytime", _bytes(t, "b.json", b"\xff\xfe\x00\x01"), "--out", t / "o"],
        r"b\.json is not valid JSON .*" + JSON_FIX),
    Row("json without runs", lambda w, t: _anytime_json(t, '{"rows": []}'),
        r"anytime\.json has no \"runs\" list: " + JSON_FIX),
    Row("json is a list", lambda w, t: _anytime_json(t, "[1, 2]"), r"has no \"runs\" list"),
    Row("json runs empty", lambda w, t: _anytime_json(t, '{"runs": []}'),
        r"anytime\.json holds no runs \(\"runs\" is empty\): " + JSON_FIX),
    Row("json run without results", lambda w, t: _anytime_json(t, _row([{"name": "a"}])),
        r"anytime\.json: runs\[0\] lacks 'results': " + JSON_FIX),
    Row("json run without name", lambda w, t: _anytime_json(t, _row([{"results": [GOOD_ROW]}])),
        r"runs\[0\] lacks 'name'"),
    Row("json run is not an object", lambda w, t: _anytime_json(t, '{"runs": [3]}'),
        r"runs\[0\] is not an object with \"name\" and \"results\""),
    Row("json row without loops",
        lambda w, t: _anytime_json(t, _row([{"name": "a", "results": [{**GOOD_ROW, "loops": None}]}])),
        r"runs\[0\]\.results\[0\] lacks a number for 'loops': " + JSON_FIX),
    Row("json metric not a number",
        lambda w, t: _anytime_json(t, _row([{"name": "a", "results": [{**GOOD_ROW, "class_consistency": "x"}]}])),
        r"results\[0\] lacks a number for 'class_consistency'"),
    Row("json without metrics",
        lambda w, t: _anytime_json(t, _row([{"name": "a", "results": [{"loops": 1, "steps": 1,
                                                                       "gflops_per_sample": 1}]}])),
        r"holds no quality metrics \(it was written without --eval\): " + JSON_FIX),
    Row("json missing", lambda w, t: ["anytime", t / "gone.json", "--out", t / "o"],
        r"gone\.json does not exist: " + JSON_FIX),
    # ---- classifier folders (`--classifier CLS_DIR`) -----------------------------------------------------------
    Row("classifier without weights", lambda w, t: _bad_classifier(w, t, lambda d: (d / WEIGHTS).unlink()),
        r"no trained classifier in .*missing classifier\.safetensors.*run `elt eval train-classifier`"),
    Row("classifier weights garbage",
        lambda w, t: _bad_classifier(w, t, lambda d: (d / WEIGHTS).write_bytes(b"\x01\x02" * 200)),
        r"classifier\.safetensors is not a readable weights file .*" + RETRAIN),
    Row("classifier weights truncated",
        lambda w, t: _bad_classifier(w, t, lambda d: (d / WEIGHTS).write_bytes((d / WEIGHTS).read_bytes()[:400])),
        r"classifier\.safetensors is not a readable weights file .*" + RETRAIN),
    Row("classifier weights empty", lambda w, t: _bad_classifier(w, t, lambda d: (d / WEIGHTS).write_bytes(b"")),
        r"classifier\.safetensors is not a readable weights file .*" + RETRAIN),
    Row("classifier record not JSON", lambda w, t: _bad_classifier(w, t, lambda d: (d / META).write_text("{x")),
        r"classifier\.json is not a classifier record \(.*\): " + RETRAIN),
    Row("classifier record without arch", lambda w, t: _bad_classifier(w, t, lambda d: (d / META).write_text("{}")),
        r"classifier\.json is not a classifier record \(no 'arch'\): " + RETRAIN),
    Row("classifier record with unknown arch key",
        lambda w, t: _bad_classifier(w, t, lambda d: (d / META).write_text('{"arch": {"depth": 3}}')),
        r"classifier\.json is not a classifier record \(.*depth.*\): " + RETRAIN),
    Row("classifier weights of another architecture",
        lambda w, t: _bad_classifier(w, t, lambda d: (d / META).write_text(
            '{"arch": {"in_channels": 1, "num_classes": 10, "width": 32, "dropout": 0.3}}')),
        r"classifier\.safetensors does not match the architecture in \S*classifier\.json .*" + RETRAIN),
    Row("classifier path is a file", lambda w, t: ["eval", w.good, "--classifier", w.good],
        r"no trained classifier in .*run `elt eval train-classifier`"),
]


def _npy(tmp: Path, array: np.ndarray) -> Path:
    np.save(tmp / "samples.npz", array)  # np.save adds .npy
    return tmp / "samples.npz.npy"


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_gets_one_clear_line(row: Row, world: World, tmp_path, tmp_path_factory, monkeypatch, capsys):
    monkeypatch.setenv("ELT_CACHE", str(tmp_path_factory.mktemp("cache")))  # outside the snapshotted folders
    here = tmp_path / "row"
    here.mkdir()
    argv = [str(a) for a in row.build(world, here)]
    before = tree_snapshot(world.root, here)
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert rc == 2, f"exit code {rc}, stderr: {err!r}"
    assert len(lines) == 1 and lines[0].startswith("elt: error: "), f"not one `elt: error:` line: {err!r}"
    assert re.search(row.message, lines[0]), f"{lines[0]!r} does not match {row.message!r}"
    assert tree_snapshot(world.root, here) == before, "files changed, appeared or vanished"


def test_rows_are_distinct():
    assert len({r.id for r in ROWS}) == len(ROWS)
