"""End-to-end smoke through `elt.cli.main`: train, sample, anytime, and clear errors (exit code 2)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from elt.cli import main
from elt.models import build_model


def _write_cfg(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cfg_dict):
    """One tiny run trained through the CLI, shared (read-only) by the tests of this module."""
    root = tmp_path_factory.mktemp("cli")
    cfg_path = _write_cfg(root / "tiny.yaml", tiny_cfg_dict())
    run = root / "run"
    rc = main(["train", str(cfg_path), "train.steps=4", "--out", str(run), "--no-progress"])
    assert rc == 0
    return cfg_path, run


def _err(capsys) -> str:
    return capsys.readouterr().err


# ---- happy paths -------------------------------------------------------------------------------------------------

def test_train_writes_a_run(trained, capsys):
    _, run = trained
    assert (run / "latest").read_text().strip() == "step_0000004"
    assert (run / "checkpoints" / "step_0000004" / "model.safetensors").is_file()
    assert (run / "log.jsonl").is_file() and (run / "summary.json").is_file()
    assert list((run / "samples").glob("*.png"))
    saved = yaml.safe_load((run / "checkpoints" / "step_0000004" / "config.yaml").read_text())
    assert saved["train"]["steps"] == 4  # overrides are recorded in the checkpoint's config


def test_train_prints_summary(tiny_cfg_dict, tmp_path, capsys):
    cfg_path = _write_cfg(tmp_path / "c.yaml", tiny_cfg_dict())
    assert main(["train", str(cfg_path), "train.steps=2", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 2 and out["stop"] == "steps" and out["loss"] > 0


def test_sample_npz_and_grid(trained, tmp_path, capsys):
    _, run = trained
    npz, grid = tmp_path / "out" / "x.npz", tmp_path / "g.png"
    rc = main(["sample", str(run), "--out", str(npz), "--grid", str(grid), "--per-class", "2", "--steps", "2",
               "--precision", "fp32", "--seed", "1"])
    assert rc == 0, _err(capsys)
    data = np.load(npz)
    assert data["arr_0"].dtype == np.uint8 and data["arr_0"].shape == (6, 8, 8, 1)
    assert data["arr_1"].tolist() == [0, 0, 1, 1, 2, 2]
    with Image.open(grid) as im:
        assert im.size[0] > 16 and im.size[1] > 24
    # same seed -> same file content; explicit labels and another loop count work
    npz2 = tmp_path / "y.npz"
    assert main(["sample", str(run), "--out", str(npz2), "--per-class", "2", "--steps", "2",
                 "--precision", "fp32", "--seed", "1"]) == 0
    assert np.array_equal(np.load(npz2)["arr_0"], data["arr_0"])
    npz3 = tmp_path / "z.npz"
    assert main(["sample", str(run), "--out", str(npz3), "--labels", "2", "0", "2", "--loops", "6",
                 "--steps", "2", "--grid", str(tmp_path / "g3.png")]) == 0
    d3 = np.load(npz3)
    assert d3["arr_0"].shape == (3, 8, 8, 1) and d3["arr_1"].tolist() == [2, 0, 2]



def test_sample_writes_a_record_beside_the_npz(trained, tmp_path, capsys):
    """OUT.json: the request (run, checkpoint step, loops, steps, guidance, seed, labels, precision), the wall time
    and the counted GFLOPs per sample; a per-step loop schedule costs the sum of its steps."""
    from elt.anytime import gflops_per_sample
    from elt.models import from_pretrained

    _, run = trained
    npz = tmp_path / "s.npz"
    assert main(["sample", str(run), "--out", str(npz), "--per-class", "2", "--steps", "2", "--loops", "3",
                 "--cfg", "2", "--seed", "7", "--precision", "fp32"]) == 0, _err(capsys)
    record = json.loads((tmp_path / "s.json").read_text())
    assert {k: record[k] for k in ("run", "checkpoint_step", "loops", "steps", "cfg", "seed", "precision",
                                   "batch_size")} == {"run": str(run), "checkpoint_step": 4, "loops": 3,
                                                      "steps": 2, "cfg": 2.0, "seed": 7, "precision": "fp32",
                                                      "batch_size": None}
    assert record["labels"] == {"n": 6, "classes": [0, 1, 2], "per_class": 2, "rule": "per class, in class order"}
    assert (record["processes"], record["chunk"]) == (1, 1000)
    assert record["wall_seconds"] > 0
    model, _ = from_pretrained(run)
    assert record["gflops_per_sample"] == pytest.approx(gflops_per_sample(model, 3, 2, 2.0))
    assert "s.json" in capsys.readouterr().out
    sched = tmp_path / "sched.npz"
    assert main(["sample", str(run), "--out", str(sched), "--labels", "1", "1", "0", "--steps", "2",
                 "--loops", "1,4", "--cfg", "1", "--precision", "fp32"]) == 0, _err(capsys)
    record = json.loads((tmp_path / "sched.json").read_text())
    assert record["loops"] == [1, 4] and record["labels"] == {"n": 3, "classes": [0, 1], "per_class": None,
                                                             "rule": "given"}
    assert record["gflops_per_sample"] == pytest.approx(gflops_per_sample(model, 1, 1, 1.0)
                                                        + gflops_per_sample(model, 4, 1, 1.0))


def test_sample_uncond_loops_reaches_the_sampler_and_the_record(trained, tmp_path, capsys, monkeypatch):
    """--uncond-loops Lw: each guided step makes two network calls, the conditional one at --loops and the
    unconditional one (null labels) at Lw; the record holds Lw and GFLOPs lower by steps·(F(L) − F(Lw))."""
    from elt.anytime import forward_flops, gflops_per_sample
    from elt.models import from_pretrained
    from elt.models.flow import FlowTransformer

    _, run = trained
    calls = []
    forward = FlowTransformer.forward

    def spy(self, x, t, y, loops, exits=None, latents=None):
        if not torch.is_grad_enabled() and len(x) > 1:  # sampling calls, not the FLOP counter's batch of 1
            calls.append((len(x), loops, sorted(set(y.tolist()))))
        return forward(self, x, t, y, loops, exits, latents)

    monkeypatch.setattr(FlowTransformer, "forward", spy)
    args = ["--per-class", "1", "--steps", "2", "--loops", "3", "--cfg", "2", "--precision", "fp32"]
    assert main(["sample", str(run), "--out", str(tmp_path / "c.npz"), *args, "--uncond-loops", "1"]) == 0, \
        _err(capsys)
    assert calls == [(3, 3, [0, 1, 2]), (3, 1, [3])] * 2  # per step: labels at L=3, null label (3) at Lw=1
    calls.clear()
    assert main(["sample", str(run), "--out", str(tmp_path / "p.npz"), *args]) == 0
    assert calls == [(6, 3, [0, 1, 2, 3])] * 2  # plain CFG: one batched call per step
    calls.clear()
    assert main(["sample", str(run), "--out", str(tmp_path / "e.npz"), *args, "--uncond-loops", "3"]) == 0
    assert calls == [(6, 3, [0, 1, 2, 3])] * 2  # Lw = L is plain CFG: still one batched call per step
    cheap, plain = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "cp")
    assert cheap["uncond_loops"] == 1 and plain["uncond_loops"] is None
    model, _ = from_pretrained(run)
    assert plain["gflops_per_sample"] == pytest.approx(gflops_per_sample(model, 3, 2, 2.0))
    saved = 2 * (forward_flops(model, 3) - forward_flops(model, 1)) / 1e9
    assert saved > 0 and cheap["gflops_per_sample"] == pytest.approx(plain["gflops_per_sample"] - saved)
    assert "uncond_loops=1" in capsys.readouterr().out


def test_sample_uncond_loops_equal_to_loops_is_plain_cfg(trained, tmp_path, capsys):
    """--uncond-loops L at --loops L is plain classifier-free guidance: the same samples, bit for bit."""
    _, run = trained
    args = ["--per-class", "2", "--steps", "2", "--loops", "2", "--cfg", "3", "--precision", "fp32", "--seed", "3"]
    assert main(["sample", str(run), "--out", str(tmp_path / "a.npz"), *args]) == 0, _err(capsys)
    assert main(["sample", str(run), "--out", str(tmp_path / "b.npz"), *args, "--uncond-loops", "2"]) == 0
    assert main(["sample", str(run), "--out", str(tmp_path / "c.npz"), *args, "--uncond-loops", "1"]) == 0
    a, b, c = (np.load(tmp_path / f"{n}.npz")["arr_0"] for n in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    ra, rb = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert ra["gflops_per_sample"] == rb["gflops_per_sample"]


def test_anytime_runs_from_python(trained, tmp_path):
    """The any-time run is a library call: the same grid as `elt anytime`, and its messages go to `log`."""
    from elt.anytime_run import AnytimeOptions, run_anytime

    _, run = trained
    lines: list[str] = []
    assert run_anytime(AnytimeOptions(runs=[str(run)], out=str(tmp_path / "a"), steps=1, max_loops=2,
                                      precision="fp32"), log=lines.append) is None  # nothing evaluated
    assert (tmp_path / "a" / "anytime.png").is_file()
    assert any("columns: loops [1, 2]" in line for line in lines)

def test_anytime_grid(trained, tmp_path, capsys):
    _, run = trained
    out = tmp_path / "any"
    assert main(["anytime", str(run), "--out", str(out), "--steps", "2", "--precision", "fp32"]) == 0
    assert (out / "anytime.png").is_file()
    assert "columns: loops [1, 2, 3, 4, 5]" in capsys.readouterr().out  # 1 … L_max + 2
    assert main(["anytime", str(run), "--out", str(out), "--steps", "1", "--max-loops", "2"]) == 0
    with Image.open(out / "anytime.png") as im:
        assert im.size[0] < im.size[1] * 2  # 2 columns, 3 rows


def tiny_classifier(cfg_path, tmp_path, monkeypatch) -> None:
    """A one-epoch digit classifier of the trained run's data in tmp_path/cls (feature cache in tmp_path)."""
    from elt.data import load_dataset
    from elt.eval.classifier import save_classifier, train_classifier

    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))
    data = yaml.safe_load(cfg_path.read_text())["data"]["name"]
    ds = load_dataset(data, "train", image_size=8, channels=1)
    x, y = ds.get_batch(torch.arange(len(ds)))
    save_classifier(train_classifier(x, y, x, y, epochs=1, batch_size=16, progress=False)[0], tmp_path / "cls", {})


def test_anytime_eval_writes_table_and_overlay_plot(trained, tmp_path, capsys, monkeypatch):
    cfg_path, run = trained
    tiny_classifier(cfg_path, tmp_path, monkeypatch)
    out = tmp_path / "any"
    assert main(["anytime", str(run), "--out", str(out), "--eval", "--features", "classifier", "--classifier",
                 str(tmp_path / "cls"), "--per-class", "4", "--max-loops", "3", "--steps-list", "1", "2",
                 "--precision", "fp32"]) == 0
    table = json.loads((out / "anytime.json").read_text())
    (r,) = table["runs"]
    assert [(row["loops"], row["steps"]) for row in r["results"]] == [(L, s) for s in (1, 2) for L in (1, 2, 3)]
    row = r["results"][0]
    assert {"class_consistency", "fd_classifier", "fd_classifier_real_floor", "inception_score",
            "classifier_precision", "gflops_per_sample", "sample_seconds"} <= set(row)
    assert "fid" not in row  # Inception not requested
    g = {(row["loops"], row["steps"]): row["gflops_per_sample"] for row in r["results"]}
    # cost: linear in loops above a fixed embed/head cost, proportional to steps (×2 for CFG)
    assert g[(2, 1)] - g[(1, 1)] == pytest.approx(g[(3, 1)] - g[(2, 1)]) and g[(2, 1)] > g[(1, 1)]
    assert g[(1, 2)] == pytest.approx(2 * g[(1, 1)])
    assert (out / "anytime_quality.png").is_file() and (out / "anytime.png").is_file()
    # earlier tables overlay without sampling again
    out2 = tmp_path / "overlay"
    assert main(["anytime", str(out / "anytime.json"), str(out / "anytime.json"), "--out", str(out2)]) == 0
    assert len(json.loads((out2 / "anytime.json").read_text())["runs"]) == 2
    assert (out2 / "anytime_quality.png").is_file()


def test_anytime_uncond_loops_in_the_table_and_its_gflops(trained, tmp_path, capsys, monkeypatch):
    """`elt anytime --uncond-loops 1`: every column's guidance runs its unconditional branch at 1 loop; the
    table records it and each row costs steps·(F(L) + F(1))."""
    from elt.anytime import forward_flops
    from elt.models import from_pretrained

    cfg_path, run = trained
    tiny_classifier(cfg_path, tmp_path, monkeypatch)
    out = tmp_path / "any"
    assert main(["anytime", str(run), "--out", str(out), "--classifier", str(tmp_path / "cls"), "--per-class", "2",
                 "--max-loops", "3", "--steps", "1", "--cfg", "2", "--uncond-loops", "1", "--precision",
                 "fp32"]) == 0, _err(capsys)
    (r,) = json.loads((out / "anytime.json").read_text())["runs"]
    assert r["uncond_loops"] == 1 and r["cfg"] == 2.0
    model, _ = from_pretrained(run)
    for row in r["results"]:
        want = (forward_flops(model, row["loops"]) + forward_flops(model, 1)) / 1e9
        assert row["gflops_per_sample"] == pytest.approx(want)


def test_anytime_steps_list_needs_eval(trained, tmp_path, capsys):
    _, run = trained
    assert main(["anytime", str(run), "--out", str(tmp_path), "--steps-list", "2"]) == 2
    assert "--eval" in _err(capsys)


# ---- errors: exit code 2 and a helpful message -------------------------------------------------------------------

def test_unknown_config_key_suggests(trained, tmp_path, capsys):
    cfg_path, _ = trained
    rc = main(["train", str(cfg_path), "train.lrr=1e-3", "--out", str(tmp_path / "r")])
    err = _err(capsys)
    assert rc == 2
    assert "unknown config key 'train.lrr'" in err and "did you mean 'lr'" in err
    assert not (tmp_path / "r").exists()


def test_unknown_key_in_yaml_file(tiny_cfg_dict, tmp_path, capsys):
    cfg = tiny_cfg_dict()
    cfg["model"]["dimm"] = 32
    rc = main(["train", str(_write_cfg(tmp_path / "c.yaml", cfg)), "--out", str(tmp_path / "r")])
    assert rc == 2 and "did you mean 'dim'" in _err(capsys)


def test_loops_below_one(trained, tmp_path, capsys):
    cfg_path, _ = trained
    rc = main(["train", str(cfg_path), "train.loops=0", "--out", str(tmp_path / "r")])
    assert rc == 2 and "train.loops must be >= 1" in _err(capsys)


def test_patch_not_dividing_image(trained, tmp_path, capsys):
    cfg_path, _ = trained
    rc = main(["train", str(cfg_path), "model.patch=3", "--out", str(tmp_path / "r")])
    err = _err(capsys)
    assert rc == 2 and "model.patch=3 does not divide model.image_size=8" in err


def test_bad_value_type(trained, tmp_path, capsys):
    cfg_path, _ = trained
    rc = main(["train", str(cfg_path), "train.loops=two", "--out", str(tmp_path / "r")])
    assert rc == 2 and "train.loops must be an integer" in _err(capsys)


def test_overrides_after_options(tiny_cfg_dict, tmp_path, capsys):
    cfg_path = _write_cfg(tmp_path / "c.yaml", tiny_cfg_dict())
    rc = main(["train", str(cfg_path), "--out", str(tmp_path / "r"), "--no-progress", "train.steps=1"])
    assert rc == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["step"] == 1


def test_missing_config_file(tmp_path, capsys):
    rc = main(["train", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")])
    err = _err(capsys)
    assert rc == 2 and "nope.yaml does not exist" in err


def test_sample_folder_without_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["sample", str(tmp_path / "empty"), "--out", str(tmp_path / "x.npz")])
    err = _err(capsys)
    assert rc == 2 and "no checkpoint found" in err and "elt train" in err
    rc = main(["sample", str(tmp_path / "missing"), "--out", str(tmp_path / "x.npz")])
    assert rc == 2 and "does not exist" in _err(capsys)
    rc = main(["anytime", str(tmp_path / "empty"), "--out", str(tmp_path / "a")])
    assert rc == 2 and "no checkpoint found" in _err(capsys)


def test_train_into_existing_run_needs_resume(trained, capsys):
    cfg_path, run = trained
    before = (run / "latest").read_text()
    rc = main(["train", str(cfg_path), "train.steps=4", "--out", str(run), "--no-progress"])
    err = _err(capsys)
    assert rc == 2 and "already holds a trained run" in err and "--resume" in err
    assert (run / "latest").read_text() == before


def test_resume_empty_folder(trained, tmp_path, capsys):
    cfg_path, _ = trained
    (tmp_path / "empty").mkdir()
    rc = main(["train", str(cfg_path), "--out", str(tmp_path / "empty"), "--resume", "--no-progress"])
    err = _err(capsys)
    assert rc == 2 and "cannot resume" in err


def test_resume_with_other_architecture(trained, tmp_path, capsys):
    cfg_path, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    rc = main(["train", str(cfg_path), "model.dim=64", "--out", str(copy), "--resume", "--no-progress"])
    assert rc == 2 and "another architecture" in _err(capsys)


def test_checkpoint_from_another_architecture(trained, make_config, tmp_path, capsys):
    _, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ckpt = copy / "checkpoints" / (copy / "latest").read_text().strip()
    other = build_model(make_config("model.dim=64"))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(ckpt / "model.safetensors"))
    rc = main(["sample", str(copy), "--out", str(tmp_path / "x.npz"), "--steps", "1"])
    err = _err(capsys)
    assert rc == 2 and "another architecture" in err and "shape differs" in err
    assert not (tmp_path / "x.npz").exists()


def test_sample_loops_zero_is_an_error(trained, tmp_path, capsys):
    _, run = trained
    rc = main(["sample", str(run), "--out", str(tmp_path / "x.npz"), "--loops", "0", "--steps", "1",
               "--per-class", "1"])
    assert rc == 2 and "--loops must be an integer >= 1" in _err(capsys)


def test_sample_negative_loops_is_an_error(trained, tmp_path, capsys):
    _, run = trained
    rc = main(["sample", str(run), "--out", str(tmp_path / "x.npz"), "--loops", "-2", "--steps", "1"])
    assert rc == 2 and "--loops must be an integer >= 1" in _err(capsys)


def test_sample_bad_labels(trained, tmp_path, capsys):
    _, run = trained
    rc = main(["sample", str(run), "--out", str(tmp_path / "x.npz"), "--labels", "0", "7"])
    assert rc == 2 and "outside 0..2" in _err(capsys)


def test_train_model_flag_names_a_size(trained, tmp_path, capsys):
    """`--model SIZE` replaces the config file's architecture (the MNIST size expects 28×28 images, which the
    tiny 8×8 data set does not give); overrides after it still win; an unknown size is a usage error listing
    the choices."""
    cfg_path, _ = trained
    rc = main(["train", str(cfg_path), "--model", "ELT-MNIST/7-2x4", "--out", str(tmp_path / "r")])
    assert rc == 2 and "but the model expects (1, 28, 28)" in _err(capsys)
    rc = main(["train", str(cfg_path), "--model", "ELT-MNIST/7-2x4", "model.patch=3", "--out", str(tmp_path / "r")])
    assert rc == 2 and "model.patch=3 does not divide model.image_size=28" in _err(capsys)
    with pytest.raises(SystemExit) as e:
        main(["train", str(cfg_path), "--model", "ELT-Nope", "--out", str(tmp_path / "r")])
    assert e.value.code == 2 and "ELT-MNIST/7-2x4" in _err(capsys)


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sample"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2


def test_sampled_weights_are_the_ema_weights(trained):
    """`from_pretrained` loads model.safetensors (EMA), not the raw weights in state.pt."""
    from elt.checkpoint import find_checkpoint, load_train_state
    from elt.models import from_pretrained
    from safetensors.torch import load_file

    _, run = trained
    model, cfg = from_pretrained(run)
    ckpt = find_checkpoint(run)
    ema, raw = load_file(str(ckpt / "model.safetensors")), load_train_state(ckpt)["model"]
    sd = model.state_dict()
    assert all(torch.equal(sd[k], ema[k]) for k in ema)
    assert any(not torch.equal(sd[k], raw[k]) for k in raw)
    assert not model.training and cfg.train.steps == 4


def test_diverging_training_exits_1(trained, tmp_path, capsys):
    cfg_path, _ = trained
    rc = main(["train", str(cfg_path), "train.lr=1e30", "train.warmup_steps=0", "train.grad_clip=0",
               "train.steps=20", "train.ckpt_every=100", "--out", str(tmp_path / "r"), "--no-progress"])
    err = _err(capsys)
    assert rc == 1 and "elt: error: step 0 made the weights explode" in err and "lower train.lr" in err
    assert not list((tmp_path / "r").rglob(".tmp-*"))


@pytest.mark.parametrize("args", [
    ["sample", "--steps", "-1"],
    ["sample", "--steps", "0"],
    ["sample", "--batch-size", "0"],
    ["anytime", "--max-loops", "-1"],
    ["anytime", "--max-loops", "0"],
    ["anytime", "--steps", "-2"],
], ids=lambda a: " ".join(a))
def test_sampling_options_below_one_are_errors(trained, tmp_path, capsys, args):
    _, run = trained
    out = tmp_path / ("x.npz" if args[0] == "sample" else "any")
    extra = ["--per-class", "1"] if args[0] == "sample" else []
    rc = main([args[0], str(run), "--out", str(out), *args[1:], *extra])
    assert rc == 2 and "must be >= 1" in _err(capsys)
