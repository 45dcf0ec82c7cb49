"""The masked family end to end on the tiny image folder: tokenizer -> ELT-MaskGIT training -> CLI sampling."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from elt.checkpoint import find_checkpoint, load_train_state
from elt.cli import main
from elt.config import load_config
from elt.train import Trainer, train

from conftest import NUM_CLASSES, SIDE, flatten_overrides, interrupt_at

# 8×8 images -> a 4×4 token grid over 16 codes; a 2-block generator looped up to 3 times.
TINY_MASKED = {
    "family": "masked",
    "tokenizer": {"base_channels": 8, "downsample": 1, "res_blocks": 0, "codebook_size": 16, "code_dim": 8,
                  "steps": 30, "batch_size": 20, "lr": 3e-3, "warmup_steps": 2, "log_every": 10},
    "model": {"image_size": SIDE, "channels": 1, "codebook_size": 16, "grid": 4, "dim": 32, "heads": 2,
              "blocks": 2, "mlp_ratio": 2.0, "num_classes": NUM_CLASSES},
    "objective": {"kind": "maskgit"},
    "data": {"image_size": SIDE, "channels": 1},
    "train": {"mode": "ilsd", "loops": 3, "min_loops": 1, "steps": 8, "batch_size": 8, "lr": 1e-3,
              "warmup_steps": 2, "precision": "fp32", "device": "cpu", "log_every": 2, "sample_every": 0,
              "ckpt_every": 100, "seed": 0, "label_dropout": 0.3},
    "sample": {"steps": 4, "cfg": 2.0},
}


@pytest.fixture
def masked_config(tiny_dataset, tmp_path):
    """Callable(*overrides) -> a tiny masked Config whose tokenizer lives in tmp_path/tok."""
    base = flatten_overrides(TINY_MASKED) + [f"data.name={tiny_dataset}", f"tokenizer.path={tmp_path / 'tok'}"]
    return lambda *over: load_config(None, base + list(over))


def test_train_builds_the_tokenizer_then_the_generator(masked_config, tmp_path, capsys):
    run = tmp_path / "run"
    summary = train(masked_config(), run, progress=False)
    assert summary["step"] == 8 and np.isfinite(summary["loss"])
    assert "no tokenizer at" in capsys.readouterr().err  # it said it trains the tokenizer first
    assert (tmp_path / "tok" / "model.safetensors").is_file()
    assert (run / "tokenizer" / "model.safetensors").is_file()  # the run folder is self-contained
    assert list((run / "tokenizer" / "tokens").glob("*/meta.json"))  # token grids cached as a code folder
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"gt_teacher", "gt_student", "distill", "student_loops"} <= set(log[-1])
    # cross-entropy starts near log V (uniform logits from the zero-initialised head)
    assert abs(log[0]["gt_teacher"] - np.log(16)) < 0.7


def test_masked_resume_is_exact(masked_config, tmp_path):
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    Trainer(masked_config(), run_a, progress=False).fit()
    tb = Trainer(masked_config(), run_b, progress=False)
    interrupt_at(tb, 4)
    Trainer(masked_config(), run_b, resume=True, progress=False).fit()
    for name in ("model.safetensors",):
        a, b = load_file(str(find_checkpoint(run_a) / name)), load_file(str(find_checkpoint(run_b) / name))
        assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = load_train_state(find_checkpoint(run_a)), load_train_state(find_checkpoint(run_b))
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])


def test_vanilla_and_baseline_modes_train(masked_config, tmp_path):
    for mode in ("vanilla", "baseline"):
        summary = train(masked_config(f"train.mode={mode}", "train.steps=2"), tmp_path / mode, progress=False)
        assert summary["step"] == 2 and "distill" not in summary


def test_cli_sample_and_anytime_work_for_the_masked_family(masked_config, tmp_path, capsys):
    run = tmp_path / "run"
    train(masked_config(), run, progress=False)
    out = tmp_path / "s.npz"
    assert main(["sample", str(run), "--loops", "2", "--per-class", "2", "--steps", "3", "--out", str(out),
                 "--grid", str(tmp_path / "g.png"), "--precision", "fp32"]) == 0
    data = np.load(out)
    assert data["arr_0"].shape == (2 * NUM_CLASSES, SIDE, SIDE, 1) and data["arr_0"].dtype == np.uint8
    assert list(data["arr_1"]) == [0, 0, 1, 1, 2, 2]
    again = tmp_path / "s2.npz"
    main(["sample", str(run), "--loops", "2", "--per-class", "2", "--steps", "3", "--out", str(again),
          "--precision", "fp32"])
    assert np.array_equal(np.load(again)["arr_0"], data["arr_0"])  # seeded: the same samples
    assert main(["anytime", str(run), "--out", str(tmp_path / "any"), "--precision", "fp32"]) == 0
    assert (tmp_path / "any" / "anytime.png").is_file()
    capsys.readouterr()
    assert main(["sample", str(run), "--steps", "17", "--out", str(out)]) == 2  # 16 tokens: at most 16 steps
    assert "steps <= 16" in capsys.readouterr().err
    # one loop count per decoding step: 2,2,2 is --loops 2; the count must match --steps
    per_step = tmp_path / "s3.npz"
    assert main(["sample", str(run), "--loops", "2,2,2", "--per-class", "2", "--steps", "3", "--out", str(per_step),
                 "--precision", "fp32"]) == 0
    assert np.array_equal(np.load(per_step)["arr_0"], data["arr_0"])
    assert main(["sample", str(run), "--loops", "2,2", "--steps", "3", "--out", str(per_step)]) == 2
    assert "needs 3 values" in capsys.readouterr().err


def test_tokenizer_mismatch_is_a_clear_error(masked_config, tmp_path):
    train(masked_config("train.steps=1"), tmp_path / "run", progress=False)
    with pytest.raises(Exception, match="codes but model.codebook_size"):
        Trainer(masked_config("model.codebook_size=32", "tokenizer.codebook_size=32",
                              f"tokenizer.path={tmp_path / 'tok'}"), tmp_path / "other", progress=False)


def test_a_bad_tokenizer_path_is_never_copied_into_the_run(masked_config, tmp_path):
    """A junk tokenizer.path stops the run before anything lands in RUN_DIR/tokenizer, so a corrected path
    is used by the next attempt (the junk copy used to be reused forever)."""
    from elt.tokenizers.pretrained import TokenizerError

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a TorchScript file")
    run = tmp_path / "run"
    with pytest.raises(TokenizerError, match="neither a tokenizer folder nor a TorchScript file"):
        Trainer(masked_config(f"tokenizer.path={junk}"), run, progress=False)
    assert not (run / "tokenizer").exists() and not (run / ".tokenizer.tmp").exists()
    assert junk.read_bytes() == b"not a TorchScript file"
    summary = train(masked_config("train.steps=1"), run, progress=False)  # the corrected (default) path
    assert summary["step"] == 1 and (run / "tokenizer" / "model.safetensors").is_file()
