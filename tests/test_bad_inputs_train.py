"""Bad input on the training side: one row per bad config key, YAML file, flag or damaged run folder.

Each row asserts the exit code, that stderr is one `elt: error:` line naming the problem and the fix (or an
`elt: warning:` line for the fallbacks), and that nothing on disk was lost or changed. Below the table: the
fault tests (two trainings into one folder, kill -9 during a checkpoint save, a dangling `latest`, a NaN or
exploding step with frequent checkpoints, the log after kill -9 and --resume).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from elt.checkpoint import find_checkpoint, load_train_state
from elt.cli import main
from elt.data import write_codes
from elt.train import Trainer, TrainingError


def snapshot(root: Path) -> dict:
    """{relative path: (bytes, mtime)} of every file below root (empty if root does not exist). The `.lock`
    file is left out: it only names the last process that held the run folder."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def one_line(err: str, prefix: str = "elt: error: ") -> str:
    """The one message line of stderr (progress-bar lines of a run that went on after a warning aside)."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cfg_dict):
    """A tiny run with two checkpoints (steps 2 and 4), read-only for the table rows."""
    root = tmp_path_factory.mktemp("bad_train")
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg_dict()))
    run = root / "run"
    assert main(["train", str(cfg_path), "train.steps=4", "train.ckpt_every=2", "--out", str(run),
                 "--no-progress"]) == 0
    return cfg_path, run


# ---- config keys and values (`elt train CONFIG key=value --out NEW`): nothing may be created --------------------

CONFIG_ROWS = [
    ("model.heads=0", r"model.heads must be >= 1"),
    ("model.patch=0", r"model.patch must be >= 1"),
    ("model.dim=0", r"model.dim must be >= 1"),
    ("model.mlp_ratio=0", r"model.mlp_ratio must be a finite number > 0"),
    ("model.mlp_ratio=-2", r"model.mlp_ratio must be a finite number > 0"),
    ("model.patch=3", r"model.patch=3 does not divide model.image_size=8: pick a patch size"),
    ("model.heads=3", r"not divisible by model.heads=3"),
    ("model.pos_embed=rope", r"model.pos_embed must be 'sincos' or 'learned'"),
    ("model.mlp_act=relu", r"model.mlp_act must be"),
    ("model.blocks=two", r"model.blocks must be an integer, got 'two'"),
    ("model.bloks=2", r"unknown config key 'model.bloks': did you mean 'blocks'\?"),
    ("objective.kind=ddim", r"objective.kind must be 'rectified_flow' or 'diffusion'"),
    ("objective.schedule_shift=0", r"objective.schedule_shift must be > 0"),
    ("train.mode=distill", r"train.mode must be one of"),
    ("train.loops=0", r"train.loops must be >= 1"),
    ("train.min_loops=3", r"need 1 <= train.min_loops < train.loops"),
    ("train.steps=0", r"train.steps must be >= 1"),
    ("train.batch_size=0", r"train.batch_size must be >= 1"),
    ("train.lr=0", r"train.lr must be a finite number > 0"),
    ("train.lr=.inf", r"train.lr must be a finite number > 0"),
    ("train.min_lr_ratio=-0.5", r"train.min_lr_ratio must be in \[0, 1\]"),
    ("train.min_lr_ratio=2", r"train.min_lr_ratio must be in \[0, 1\]"),
    ("train.max_minutes=-1", r"train.max_minutes must be a finite number >= 0.*0 disables it"),
    ("train.warmup_steps=-3", r"train.warmup_steps must be a finite number >= 0"),
    ("train.weight_decay=-0.1", r"train.weight_decay must be a finite number >= 0"),
    ("train.grad_clip=-1", r"train.grad_clip must be a finite number >= 0"),
    ("train.sample_every=-1", r"train.sample_every must be a finite number >= 0"),
    ("train.lambda_decay=-1", r"train.lambda_decay must be a finite number >= 0"),
    ("train.betas=[0.9,1.5]", r"train.betas must be two numbers in \[0, 1\)"),
    ("train.betas=[0.9]", r"train.betas must be a list of 2 numbers"),
    ("train.ema_decay=1", r"train.ema_decay must be in \[0, 1\)"),
    ("train.label_dropout=1", r"train.label_dropout must be in \[0, 1\)"),
    ("train.precision=fp16", r"fp16 is not supported"),
    ("train.precision=bf32", r"train.precision must be 'auto', 'bf16' or 'fp32'"),
    ("train.device=tpu", r"train.device must be 'auto', 'cpu' or 'cuda'"),
    ("train.log_every=0", r"train.log_every must be >= 1"),
    ("train.ckpt_every=0", r"train.ckpt_every must be >= 1"),
    ("train.keep_checkpoints=0", r"train.keep_checkpoints must be >= 1"),
    ("train.compile=maybe", r"train.compile must be true or false"),
    ("train.parallel=zero", r"train.parallel must be 'ddp' or 'fsdp', got 'zero'"),
    ("train.parallel=fsdp", r"train.parallel=fsdp needs a process group: launch with torchrun .*or use "
                            r"train.parallel=ddp in one process"),
    ("train.checkpoint_activations=some", r"train.checkpoint_activations must be true or false"),
    ("train.tensorboard=maybe", r"train.tensorboard must be true or false"),
    ("data.image_size=abc", r"data.image_size must be an integer, got 'abc'"),
    ("data.image_size=0", r"data.image_size must be >= 1"),
    ("data.channels=2", r"data.channels must be 1 \(grey\) or 3 \(RGB\)"),
    ("data.name=/no/such/folder", r"/no/such/folder"),
    ("data.name=moving-digits data.image_size=28", r"moving-digits has a fixed geometry .*leave data.image_size and "
                                                    r"data.channels unset"),
    ("sample.steps=0", r"sample.steps must be >= 1"),
    ("sample.cfg=.nan", r"sample.cfg must be a finite guidance scale"),
    ("family=video", r"family must be one of"),
    ("train.lr=[", r"override 'train.lr=\[' is not valid YAML.*fix the YAML syntax"),
    ("trainlr", r"override 'trainlr' is not of the form key=value"),
    ("objective.t_std=.inf", r"objective.t_std must be a finite number"),
    ("objective.t_mean=.nan", r"objective.t_mean must be a finite number"),
    ("objective.kind=diffusion objective.schedule_shift=.nan", r"objective.schedule_shift must be a finite number"),
    ("objective.kind=diffusion objective.sigmoid_bias=.inf", r"objective.sigmoid_bias must be a finite number"),
    ("train.seed=99999999999999999999999", r"train.seed must be an integer in 0\.\.2147483647"),
    ("train.seed=-1", r"train.seed must be an integer in 0\.\."),
    ("train.betas=[0.9,abc]", r"train.betas must be a list of 2 numbers"),
    ("sample.cfg=1e308", r"sample.cfg must be a finite guidance scale with \|sample.cfg\| <= 100"),
    ("tokenizer.codebook_size=-1", r"tokenizer: masked-family settings in a family: flow config; remove them"),
    ("sample.temp_bias=0.7", r"sample.temp_bias: masked-family settings in a family: flow config"),
    ("train.label_dropout=0 sample.cfg=3", r"sample.cfg=3 needs an unconditional model.*set train.label_dropout"),
    ("model.latent.window=3", r"model.latent.window=3 does not tile the 2x2 token grid: pick a window that divides "
                              r"every side \(1, 2\)"),
    ("model.latent.window=[1,2,2]", r"model.latent.window \[1, 2, 2\] needs one size per token-grid axis \(2x2\)"),
    ("model.latent.window=0", r"model.latent.window must be >= 1 per axis, got 0"),
    ("model.latent.window=2 model.latent.latents_per_group=0", r"model.latent.latents_per_group must be >= 1 \(or unset"),
    ("model.latent.window=2 model.latent.head_blocks=-1", r"model.latent.head_blocks must be >= 0, got -1"),
    ("model.latent.window=2 model.latent.tail_blocks=-2", r"model.latent.tail_blocks must be >= 0, got -2"),
    ("model.latent.window=2 model.latent.mlp_ratio=0", r"model.latent.mlp_ratio must be a finite number > 0"),
    ("model.latent.windw=2", r"unknown config key 'model.latent.windw': did you mean 'window'\?"),
    ("train.min_latents=2", r"train.min_latents=2 draws a latent budget per step, but the model has no latent "
                            r"interface: add a model.latent section or remove train.min_latents"),
    ("train.max_latents=2", r"train.max_latents=2 caps the latent budget drawn per step, but the model has no "
                            r"latent interface: add a model.latent section or remove train.max_latents"),
    ("model.latent.window=2 train.min_latents=3 train.max_latents=2",
     r"train.min_latents=3 exceeds train.max_latents=2: the draw is U\{min_latents..max_latents\}; lower "
     r"min_latents or raise max_latents"),
    ("model.latent.window=2 train.max_latents=5", r"train.max_latents must be in 1\.\.4 \(the model's latents per "
                                                  r"group\), got 5"),
    ("model.latent.window=2 train.max_latents=0", r"train.max_latents must be in 1\.\.4"),
    ("model.latent.window=2 train.latent_teacher=half", r"train.latent_teacher must be one of \('same', 'full'\) "
                                                        r"\(same: the teacher runs at the step's latent budget"),
    ("train.latent_teacher=full", r"train.latent_teacher=full runs the teacher at the full latent budget, but the "
                                  r"model has no latent interface: add a model.latent section or set "
                                  r"train.latent_teacher=same"),
    ("model.latent.window=2 train.mode=vanilla train.latent_teacher=full",
     r"train.latent_teacher=full needs ILSD's teacher, but train.mode=vanilla has none: set train.mode=ilsd or "
     r"train.latent_teacher=same"),
    ("model.latent.window=2 train.mode=baseline train.latent_teacher=full",
     r"train.latent_teacher=full needs ILSD's teacher, but train.mode=baseline has none"),
    ("model.latent.window=2 train.min_latents=0", r"train.min_latents must be in 1\.\.4 \(the model's latents per "
                                                  r"group\), got 0"),
    ("model.latent.window=2 train.min_latents=5", r"train.min_latents must be in 1\.\.4 .*got 5"),
    ("model.latent.window=2 train.min_latents=two", r"train.min_latents must be an integer"),
    ("model.size=ELT-Nope", r"unknown model size 'ELT-Nope': choose one of ELT-MNIST/7-2x4, "),
    ("model.size=3", r"model.size must be a string naming a model size, got 3: choose one of ELT-MNIST/7-2x4"),
    ("model.size=ELT-MaskGIT-MNIST-2x4", r"model.size 'ELT-MaskGIT-MNIST-2x4' is a masked-family model but the "
                                         r"config has family: flow; set family: masked or pick a flow-family size"),
]
if importlib.util.find_spec("tensorboard") is None:
    CONFIG_ROWS.append(("train.tensorboard=true", r"train.tensorboard=true needs the tensorboard package: pip install"))
if not torch.cuda.is_available():
    CONFIG_ROWS.append(("train.device=cuda", r"train.device=cuda but no CUDA device is visible: use train.device=cpu"))


@pytest.mark.parametrize("override,pattern", CONFIG_ROWS, ids=[r[0] for r in CONFIG_ROWS])
def test_bad_config_value(override, pattern, trained, tmp_path, capsys):
    cfg_path, _ = trained
    out = tmp_path / "new_run"
    rc = main(["train", str(cfg_path), *override.split(" "), "--out", str(out), "--no-progress"])
    import re

    line = one_line(capsys.readouterr().err)
    assert rc == 2 and re.search(pattern, line), line
    assert not out.exists()  # nothing was created


# the masked family's latent interface, on the shipped configs (7×7 token grid): config file, overrides, message
MASKED_CONFIG_ROWS = [
    ("mnist_masked_elit.yaml", "model.latent.window=2",
     r"model.latent.window=2 does not tile the 7x7 token grid: pick a window that divides every side \(1, 7\)"),
    ("mnist_masked_elit.yaml", "model.conditioning=token",
     r"model.conditioning: token does not combine with a model.latent section .*: use model.conditioning: adaln, "
     r"or remove model.latent"),
    ("mnist_masked_elit.yaml", "train.min_latents=17",
     r"train.min_latents must be in 1\.\.16 \(the model's latents per group\), got 17"),
    ("mnist_masked.yaml", "train.min_latents=2",
     r"train.min_latents=2 draws a latent budget per step, but the model has no latent interface: add a "
     r"model.latent section or remove train.min_latents"),
]


@pytest.mark.parametrize("config,override,pattern", MASKED_CONFIG_ROWS,
                         ids=[" ".join(r[:2]) for r in MASKED_CONFIG_ROWS])
def test_bad_masked_latent_config_value(config, override, pattern, tmp_path, capsys):
    import re

    out = tmp_path / "new_run"
    shipped = Path(__file__).resolve().parents[1] / "configs" / config
    rc = main(["train", str(shipped), *override.split(" "), "--out", str(out), "--no-progress"])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and re.search(pattern, line), line
    assert not out.exists()  # nothing was created


# ---- code folders (`data.name=CODE_DIR`: pre-computed latents or tokens): nothing may be created or changed ------

def _code_folder(root: Path) -> Path:
    """A valid latent code folder that fits the tiny model: 24 items of 1×8×8 float32, 3 classes."""
    codes = np.random.default_rng(0).normal(size=(24, 1, 8, 8)).astype(np.float32)
    return write_codes(root / "codes", codes, np.arange(24) % 3, ["a", "b", "c"], kind="latents", source="s",
                       codec="test")


def _meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(changes)
    (folder / "meta.json").write_text(json.dumps(meta))


REWRITE_CODES = r"write the code folder again"
CODE_ROWS = [
    ("meta.json not JSON", lambda f: (f / "meta.json").write_text("{"),
     r"cannot read .*meta\.json .*" + REWRITE_CODES),
    ("meta.json another format", lambda f: _meta(f, format="x"), r"is not a code folder's meta\.json"),
    ("meta.json newer version", lambda f: _meta(f, version=9), r"has version 9, this elt reads version 1"),
    ("meta.json key missing", lambda f: _drop(f, "kind"), r"lacks \['kind'\]: " + REWRITE_CODES),
    ("meta.json unknown key", lambda f: _meta(f, scale=1), r"has unknown keys \['scale'\]"),
    ("meta.json kind", lambda f: _meta(f, kind="pixels"), r"\"kind\" must be one of tokens, latents"),
    ("meta.json dtype for kind", lambda f: _meta(f, dtype="int16"),
     r"latents codes must have dtype float16 or float32"),
    ("meta.json shape", lambda f: _meta(f, shape=[24, "8"]), r"\"shape\" must be a list of integers"),
    ("meta.json shape vs codes.npy", lambda f: _meta(f, shape=[24, 1, 4, 4]), r"codes\.npy holds float32 "
                                                                              r"\(24, 1, 8, 8\) but meta\.json says"),
    ("meta.json source", lambda f: _meta(f, source=5), r"\"source\" must be a string, got 5"),
    ("meta.json codec", lambda f: _meta(f, codec=["vae"]), r"\"codec\" must be a string"),
    ("meta.json stats", lambda f: _meta(f, stats=[1, 2]), r"\"stats\" must be an object"),
    ("meta.json class_names", lambda f: _meta(f, class_names="abc"), r"\"class_names\" must be a list of strings"),
    ("meta.json codebook_size on latents", lambda f: _meta(f, codebook_size=4),
     r"latent codes have no \"codebook_size\""),
    ("meta.json tokens of float dtype", lambda f: _meta(f, kind="tokens"), r"tokens codes must have dtype"),
    ("meta.json tokens without codebook_size", lambda f: _meta(f, kind="tokens", dtype="int16"),
     r"token codes need \"codebook_size\" \(an integer >= 1\)"),
    ("meta.json moments without vae", lambda f: _meta(f, kind="moments"),
     r"moments need \"vae\" with its \"scaling_factor\" \(a number > 0\), got None: write the latents again"),
    ("meta.json moments of odd channels", lambda f: _meta(f, kind="moments", vae={"scaling_factor": 0.18215}),
     r"moments hold cat\(mean, std\), an even number of channels, got 1"),
    ("meta.json vae on latents", lambda f: _meta(f, vae={"scaling_factor": 0.18215}),
     r"only moments record a \"vae\": remove it"),
    ("labels.npy", lambda f: np.save(f / "labels.npy", np.zeros(3)),
     r"labels\.npy must hold 24 integer labels"),
    ("codes.npy unreadable", lambda f: (f / "codes.npy").write_bytes(b"x"), r"cannot read .*codes\.npy"),
    ("resized", None, r"is a code folder \(pre-computed codes\), which cannot be resized or converted"),
]


def _drop(folder: Path, key: str) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    del meta[key]
    (folder / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("change,pattern", [r[1:] for r in CODE_ROWS], ids=[r[0] for r in CODE_ROWS])
def test_bad_code_folder(change, pattern, trained, tmp_path, capsys):
    import re

    cfg_path, _ = trained
    folder = _code_folder(tmp_path)
    size = ["data.image_size=null", "data.channels=null"]
    if change is None:
        size = ["data.image_size=8", "data.channels=null"]
    else:
        change(folder)
    before, out = snapshot(folder), tmp_path / "new_run"
    rc = main(["train", str(cfg_path), f"data.name={folder}", *size, "--out", str(out), "--no-progress"])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and re.search(pattern, line), line
    assert snapshot(folder) == before and not out.exists()


def test_a_good_code_folder_trains(trained, tmp_path, capsys):
    """The control row: the same folder unchanged trains (so the rows above fail for their change)."""
    cfg_path, _ = trained
    folder, out = _code_folder(tmp_path), tmp_path / "new_run"
    rc = main(["train", str(cfg_path), f"data.name={folder}", "data.image_size=null", "data.channels=null",
               "train.steps=1", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "log.jsonl").is_file()


# ---- config files ------------------------------------------------------------------------------------------------

FILE_ROWS = [
    ("syntax", "model:\n  dim: 32\n   heads: 2\n", r"is not valid YAML at line \d+, column \d+.*fix the YAML syntax"),
    ("empty", "", r"is empty: start from a shipped config"),
    ("comments only", "# nothing here\n", r"is empty"),
    ("a list", "- 1\n- 2\n", r"must be a mapping of sections.*got a list"),
    ("section not a mapping", "model: 5\n", r"model must be a mapping, got int"),
    ("tab indent", "model:\n\tdim: 32\n", r"is not valid YAML"),
    ("duplicate key", "family: flow\nfamily: masked\n", r"is not valid YAML at line 2.*key 'family' is given twice"),
    ("duplicate nested key", "train:\n  lr: 0.1\n  lr: 0.2\n", r"key 'lr' is given twice"),
]


@pytest.mark.parametrize("name,text,pattern", FILE_ROWS, ids=[r[0] for r in FILE_ROWS])
def test_bad_config_file(name, text, pattern, tmp_path, capsys):
    import re

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    rc = main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and re.search(pattern, line), line
    assert str(path) in line or name == "section not a mapping", line  # that one names the key at fault
    assert path.read_text() == text and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["binary", "utf16", "folder"])
def test_unreadable_config_file(kind, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    if kind == "binary":
        path.write_bytes(bytes(range(256)))
    elif kind == "utf16":
        path.write_bytes("family: flow\n".encode("utf-16"))
    else:
        path.mkdir()
    rc = main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    line = one_line(capsys.readouterr().err)
    want = "is a folder: pass a YAML file" if kind == "folder" else "is not UTF-8 text: save it as a plain YAML"
    assert rc == 2 and want in line, line
    assert not (tmp_path / "run").exists()


def test_missing_config_file(tmp_path, capsys):
    rc = main(["train", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 2 and "does not exist" in one_line(capsys.readouterr().err)


# ---- flags and run folders ---------------------------------------------------------------------------------------

def test_train_into_a_trained_folder_without_resume(trained, capsys):
    cfg_path, run = trained
    before = snapshot(run)
    rc = main(["train", str(cfg_path), "--out", str(run), "--no-progress"])
    assert rc == 2 and "already holds a trained run: pass --resume" in one_line(capsys.readouterr().err)
    assert snapshot(run) == before


@pytest.mark.parametrize("out,pattern", [("", r"--out is empty"), ("FILE", r"--out .* is a file: pass a folder"),
                                         ("DATA", r"lies inside the data folder .* choose a folder outside it")])
def test_bad_out_folder(out, pattern, trained, tmp_path, tiny_data_dir, capsys):
    import re

    cfg_path, _ = trained
    target = {"": "", "FILE": str(cfg_path), "DATA": str(tiny_data_dir / "runs" / "x")}[out]
    before, data_before = snapshot(cfg_path.parent), snapshot(tiny_data_dir)
    rc = main(["train", str(cfg_path), "--out", target, "--no-progress"])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and re.search(pattern, line), line
    assert snapshot(cfg_path.parent) == before and snapshot(tiny_data_dir) == data_before


def test_resuming_a_finished_run_touches_nothing(trained, capsys):
    cfg_path, run = trained
    before = snapshot(run)
    rc = main(["train", str(cfg_path), "train.steps=4", "train.ckpt_every=2", "--out", str(run), "--resume",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0 and "already finished at step 4" in err and "--allow-changes" in err
    assert snapshot(run) == before


@pytest.mark.parametrize("pointer", ["relative", "absolute"])
def test_latest_pointing_outside_the_run_is_never_followed(pointer, trained, tmp_path, capsys):
    other = _copy_run(trained[1], tmp_path / "other")
    run = _copy_run(trained[1], tmp_path / "run")
    target = other / "checkpoints" / "step_0000004"
    (run / "latest").write_text(("../../other/checkpoints/step_0000004" if pointer == "relative" else str(target))
                                + "\n")
    rc = main(["sample", str(run), "--per-class", "1", "--steps", "1", "--out", str(tmp_path / "s.npz")])
    line = one_line(capsys.readouterr().err, "elt: warning: ")
    assert rc == 0 and "latest is unusable (it names" in line and "never followed" in line, line
    assert "using step_0000004, the newest intact checkpoint" in line, line


def test_allow_changes_needs_resume(trained, tmp_path, capsys):
    cfg_path, _ = trained
    rc = main(["train", str(cfg_path), "--out", str(tmp_path / "r"), "--allow-changes", "--no-progress"])
    assert rc == 2 and "--allow-changes only applies with --resume" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("override", ["train.lr=5e-4", "train.batch_size=4", "train.steps=9", "train.warmup_steps=1",
                                      "train.precision=bf16"])
def test_resume_with_a_changed_setting_is_refused(override, trained, capsys):
    cfg_path, run = trained
    before = snapshot(run)
    rc = main(["train", str(cfg_path), "train.steps=4", "train.ckpt_every=2", override, "--out", str(run),
               "--resume", "--no-progress"])
    line = one_line(capsys.readouterr().err)
    key = override.split("=")[0]
    assert rc == 2 and "cannot resume" in line and key in line and "--allow-changes" in line, line
    assert snapshot(run) == before


def test_resume_into_a_missing_folder(trained, tmp_path, capsys):
    cfg_path, _ = trained
    rc = main(["train", str(cfg_path), "--out", str(tmp_path / "missing"), "--resume", "--no-progress"])
    assert rc == 2 and "does not exist" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "missing").exists()


# ---- damaged checkpoints: fall back to the newest intact one, with a warning naming the broken one ----------------

def _copy_run(run: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(run, dst)
    return dst


DAMAGE = {
    "truncated weights": lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:500]),
    "empty weights": lambda c: (c / "model.safetensors").write_bytes(b""),
    "garbage weights": lambda c: (c / "model.safetensors").write_bytes(b"\x00" * 64),
    "broken config.yaml": lambda c: (c / "config.yaml").write_text("model:\n  dim: [\n"),
    "deleted folder": lambda c: __import__("shutil").rmtree(c),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_sample_falls_back_to_the_newest_intact_checkpoint(damage, trained, tmp_path, capsys):
    run = _copy_run(trained[1], tmp_path / "run")
    DAMAGE[damage](run / "checkpoints" / "step_0000004")
    before = snapshot(run)
    rc = main(["sample", str(run), "--per-class", "1", "--steps", "1", "--out", str(tmp_path / "s.npz")])
    line = one_line(capsys.readouterr().err, "elt: warning: ")
    assert rc == 0 and "step_0000004 is unusable" in line and "using step_0000002" in line, line
    assert snapshot(run) == before and (tmp_path / "s.npz").is_file()


@pytest.mark.parametrize("damage", ["truncated state", "empty state"])
def test_resume_falls_back_when_the_training_state_is_damaged(damage, trained, tmp_path, capsys):
    cfg_path, run0 = trained
    run = _copy_run(run0, tmp_path / "run")
    state = run / "checkpoints" / "step_0000004" / "state.pt"
    state.write_bytes(state.read_bytes()[:200] if damage == "truncated state" else b"")
    rc = main(["train", str(cfg_path), "train.steps=4", "train.ckpt_every=2", "--out", str(run), "--resume",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0 and "elt: warning: step_0000004 is unusable (state.pt is missing or truncated)" in err, err
    assert load_train_state(find_checkpoint(run, need_state=True))["step"] == 4  # steps 2..3 trained again


def test_every_checkpoint_broken_is_an_error(trained, tmp_path, capsys):
    run = _copy_run(trained[1], tmp_path / "run")
    for step in ("step_0000002", "step_0000004"):
        DAMAGE["empty weights"](run / "checkpoints" / step)
    rc = main(["sample", str(run), "--per-class", "1", "--out", str(tmp_path / "s.npz")])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and "no intact checkpoint" in line and "step_0000002" in line and "new run folder" in line
    assert not (tmp_path / "s.npz").exists()


# ---- fault tests -------------------------------------------------------------------------------------------------

def _env() -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def test_dangling_latest_is_never_mistaken_for_an_empty_folder(trained, tmp_path, capsys):
    cfg_path, run0 = trained
    run = _copy_run(run0, tmp_path / "run")
    import shutil

    shutil.rmtree(run / "checkpoints" / "step_0000004")  # `latest` now points at nothing
    before = snapshot(run)
    rc = main(["train", str(cfg_path), "--out", str(run), "--no-progress"])  # without --resume: refused
    assert rc == 2 and "already holds a trained run" in one_line(capsys.readouterr().err)
    assert snapshot(run) == before
    rc = main(["train", str(cfg_path), "train.steps=4", "train.ckpt_every=2", "--out", str(run), "--resume",
               "--no-progress"])
    assert rc == 0 and "using step_0000002" in capsys.readouterr().err
    assert (run / "latest").read_text().strip() == "step_0000004"


def test_a_second_training_into_the_same_folder_refuses(tiny_cfg_dict, tmp_path):
    cfg = tiny_cfg_dict()
    cfg["train"].update({"steps": 100000, "ckpt_every": 100000, "log_every": 1})
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "elt.cli", "train", str(cfg_path), "--out", str(run),
                              "--no-progress"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "log.jsonl").is_file():
            time.sleep(0.2)
        second = subprocess.run([sys.executable, "-m", "elt.cli", "train", str(cfg_path), "--out", str(run),
                                 "--no-progress"], env=_env(), capture_output=True, text=True, timeout=120)
        line = one_line(second.stderr)
        assert second.returncode == 2 and "is being trained by process" in line and "another --out" in line, line
        assert first.poll() is None  # the first one is still training, undisturbed
    finally:
        first.send_signal(2)  # SIGINT: it saves a checkpoint and exits 130
        first.communicate(timeout=120)
    assert first.returncode == 130
    assert load_train_state(find_checkpoint(run))["step"] >= 1


def test_kill_during_a_checkpoint_save_then_resume_is_exact(tiny_cfg_dict, tmp_path):
    """kill -9 in the middle of writing step 4's checkpoint: the stale temporary folder is removed on the next
    start, the run resumes from step 2 and ends bit-identical to an uninterrupted run."""
    cfg = tiny_cfg_dict()
    cfg["train"].update({"steps": 6, "ckpt_every": 2, "log_every": 1})
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", str(cfg_path), "--out", str(ref), "--no-progress"]) == 0
    killed = subprocess.run(_script(f"""
        import os, signal, torch
        import elt.checkpoint as ck
        real = torch.save
        def save(obj, path, *a, **k):
            if isinstance(obj, dict) and obj.get("step") == 4:
                real(obj, path, *a, **k)
                os.kill(os.getpid(), signal.SIGKILL)  # the temporary folder is complete but never renamed
            return real(obj, path, *a, **k)
        ck.torch.save = save
        from elt.cli import main
        main(["train", {str(cfg_path)!r}, "--out", {str(run)!r}, "--no-progress"])
        """), env=_env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert list((run / "checkpoints").glob(".tmp-*")) and (run / "latest").read_text().strip() == "step_0000002"
    rows = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3, 4]  # logged past the checkpoint before the kill
    done = subprocess.run([sys.executable, "-m", "elt.cli", "train", str(cfg_path), "--out", str(run), "--resume",
                           "--no-progress"], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "removed" in done.stderr and ".tmp-" in done.stderr
    assert not list((run / "checkpoints").glob(".tmp-*"))
    a, b = load_train_state(find_checkpoint(ref)), load_train_state(find_checkpoint(run))
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    rows = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3, 4, 5, 6]  # the rows after the checkpoint are not duplicated


@pytest.mark.parametrize("fault", ["nan", "explode"])
def test_a_bad_step_never_becomes_latest(fault, make_config, tiny_dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    t = Trainer(make_config("train.steps=12", "train.ckpt_every=1", "train.grad_clip=0"), run, progress=False)
    if fault == "nan":
        orig = t.family.process.gt_loss
        monkeypatch.setattr(t.family.process, "gt_loss",
                            lambda p, y, w: orig(p, y, w) * (float("nan") if t.step >= 5 else 1.0))
        match = "loss became nan at step 5"
    else:  # a finite but exploding update: the learning rate jumps at step 5
        import elt.train.schedule as tr

        orig_lr = tr.learning_rate
        monkeypatch.setattr(tr, "learning_rate", lambda s, cfg: 1e4 if s >= 5 else orig_lr(s, cfg))
        match = "step 5 made the weights explode"
    with pytest.raises(TrainingError, match=match):
        t.fit()
    assert (run / "latest").read_text().strip() == "step_0000005"  # the state after steps 0..4
    state = load_train_state(find_checkpoint(run))
    assert state["step"] == 5
    assert max(v.abs().max().item() for v in state["model"].values()) < 10  # sane weights


def test_summary_reports_the_real_step_after_an_interrupt(make_config, tiny_dataset, tmp_path):
    from conftest import interrupt_at

    run = tmp_path / "run"
    t = Trainer(make_config("train.steps=20", "train.log_every=4"), run, progress=False)
    interrupt_at(t, 6)  # logged at 4, interrupted at 6
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 6 and summary["logged_step"] == 4 and summary["stop"] == "interrupted"


# ---- data ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("junk", [b"", b"not a png at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_a_corrupt_image_in_a_folder_is_named_when_indexed(junk, tiny_cfg_dict, tiny_data_dir, tmp_path, capsys):
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(tiny_data_dir, folder)
    bad = folder / "class_1" / "img_zz.png"
    bad.write_bytes(junk)
    cfg = tiny_cfg_dict()
    cfg["data"]["name"] = str(folder)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rc = main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-progress"])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and "unreadable image(s)" in line and str(bad) in line and "Remove or replace" in line, line
    assert not (tmp_path / "run").exists() and bad.read_bytes() == junk


@pytest.mark.parametrize("env,pattern", [({"WORLD_SIZE": "2", "RANK": "0"}, r"MASTER_ADDR is not set: launch with"),
                                         ({"LOCAL_RANK": "abc"}, r"must be integers: launch with torchrun")])
def test_distributed_variables_without_torchrun(env, pattern, trained, tmp_path, monkeypatch, capsys):
    import re

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    rc = main(["train", str(trained[0]), "--out", str(tmp_path / "run"), "--no-progress"])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and re.search(pattern, line), line
    assert not (tmp_path / "run").exists()


def test_guidance_on_a_run_without_a_null_label(tiny_cfg_dict, tmp_path, capsys):
    cfg = tiny_cfg_dict()
    cfg["train"]["label_dropout"] = 0.0
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "train.steps=1", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    rc = main(["sample", str(tmp_path / "run"), "--cfg", "3", "--per-class", "1", "--out", str(tmp_path / "s.npz")])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and "train.label_dropout=0 (no null label): sample with --cfg 1" in line, line
    assert not (tmp_path / "s.npz").exists()
