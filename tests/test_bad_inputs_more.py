"""More bad input (`elt anytime`, `elt bench`, `elt tokenizer`, `elt sample` of a masked run): one row per input.

A row that must fail checks: exit code 2; stderr is exactly one line starting with `elt: error:` that names the
problem and the fix (a regex per row); nothing on disk changed (the shared inputs and the row's own folder are
snapshotted, bytes and mtimes, before and after). A row that must succeed (exit 0) checks its `elt:` lines on
stderr (none, or the one warning of the row), that no earlier file changed, and what it wrote.
"""
from __future__ import annotations

import copy

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from conftest import tree_snapshot, write_tiny_image_folder
from test_masked_e2e import TINY_MASKED as E2E_MASKED
from elt.cli import main

# the end-to-end tests' tiny masked config, made faster: 4 tokenizer steps, 1 generator step, no guidance
TINY_MASKED = copy.deepcopy(E2E_MASKED)
TINY_MASKED["tokenizer"].update(steps=4, log_every=2)
TINY_MASKED["train"].update(steps=1, warmup_steps=1, log_every=1)
del TINY_MASKED["train"]["label_dropout"]
TINY_MASKED["sample"].update(steps=2, cfg=1.0)


@dataclass
class World:
    """Inputs shared (read-only) by every row."""
    root: Path
    cfg: Path  # tiny flow config (no tokenizer: section)
    run: Path  # flow run trained on it
    cls: Path  # classifier, 3 classes, 8×8 grey
    mcfg: Path  # tiny masked config (tokenizer: section, tokenizer.path = tok)
    tok: Path  # tokenizer folder written by `elt tokenizer train`
    mrun: Path  # masked run trained with that tokenizer


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_cfg_dict) -> World:
    root = tmp_path_factory.mktemp("bad_more_inputs")
    mp = pytest.MonkeyPatch()
    mp.setenv("ELT_CACHE", str(tmp_path_factory.mktemp("bad_more_cache")))
    try:
        data = root / "data"
        write_tiny_image_folder(data / "train")
        write_tiny_image_folder(data / "test", per_class=4)
        cfg = root / "tiny.yaml"
        cfg.write_text(yaml.safe_dump(tiny_cfg_dict()))
        run = root / "run"
        assert main(["train", str(cfg), "train.steps=2", "--out", str(run), "--no-progress"]) == 0
        cls = root / "cls"
        assert main(["eval", "train-classifier", str(data), "--out", str(cls), "--epochs", "1",
                     "--image-size", "8", "--channels", "1"]) == 0
        tok, mrun, mcfg = root / "tok", root / "mrun", root / "masked.yaml"
        masked = {**TINY_MASKED, "data": {**TINY_MASKED["data"], "name": str(data)},
                  "tokenizer": {**TINY_MASKED["tokenizer"], "path": str(tok)}}
        mcfg.write_text(yaml.safe_dump(masked))
        assert main(["tokenizer", "train", str(mcfg), "--no-progress"]) == 0
        assert main(["train", str(mcfg), "--out", str(mrun), "--no-progress"]) == 0
    finally:
        mp.undo()
    return World(root, cfg, run, cls, mcfg, tok, mrun)


# ---- helpers that build a row's input inside the row's own folder -----------------------------------------------

def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _old_file(folder: Path, name: str) -> Path:
    """An existing file that a failing command must leave alone."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"an earlier result")
    return folder / name


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _anytime_old_grid(w: World, t: Path) -> list:
    _old_file(t / "any", "anytime.png")
    return ["anytime", w.run, "--out", t / "any", "--classifier", w.cls, "--ref", t / "nosuch", "--steps", "1",
            "--max-loops", "1", "--per-class", "1"]


def _bench(w: World, json_path: Path) -> list:
    return ["bench", w.cfg, "--smoke", "--threads", "1", "--no-peer", "--json", json_path]


def _tok_train(w: World, *extra) -> list:
    return ["tokenizer", "train", w.mcfg, "--no-progress", *extra]


def _tok_eval(w: World, out: Path) -> list:
    return ["tokenizer", "eval", w.tok, "--no-progress", "--out", out]


def _masked_run_without_tokenizer(w: World, t: Path) -> list:
    run = _copy(w.mrun, t / "mrun")
    shutil.rmtree(run / "tokenizer")
    return ["sample", run, "--out", t / "x.npz", "--per-class", "1", "--steps", "1", "--precision", "fp32"]


def _two_runs_named_run(w: World, t: Path) -> list:
    return ["anytime", w.run, _copy(w.run, t / "other" / "run"), "--out", t / "any", "--steps", "1",
            "--max-loops", "1"]


def _two_grids(w: World, t: Path) -> None:
    grids = sorted(p.name for p in (t / "any").glob("anytime_*.png"))
    assert grids == sorted([f"anytime_{w.root.name}_run.png", "anytime_other_run.png"]), grids


def _sample_beside_a_folder(w: World, t: Path) -> list:
    _mkdir(t / "x.json")  # where `elt sample --out x.npz` writes its record
    return ["sample", w.run, "--out", t / "x.npz", "--steps", "1"]


def _wrote_samples(w: World, t: Path) -> None:
    assert (t / "x.npz").is_file()


NOT_A_TOKENIZER = (r"not a tokenizer folder: choose another output folder \(--out or tokenizer\.path\); only a "
                   r"folder written by `elt tokenizer train` may be replaced")


@dataclass
class Row:
    id: str
    build: Callable[[World, Path], list]  # (world, the row's folder) -> argv; may create inputs there
    message: str | None  # regex: the problem and the fix (None: no `elt:` line at all)
    rc: int = 2
    check: Callable[[World, Path], None] | None = None  # rc 0: what the command must have written


ROWS = [
    Row("anytime --ref unknown, an earlier anytime.png", _anytime_old_grid,
        r"--ref \S*nosuch cannot serve as reference data \(unknown dataset .*\): pass --ref mnist, digits or an "
        r"image folder"),
    Row("anytime two runs with the same folder name", _two_runs_named_run, None, rc=0, check=_two_grids),
    Row("tokenizer train --force over a YAML file",
        lambda w, t: _tok_train(w, "--out", _old_file(t, "notes.yaml"), "--force"),
        r"notes\.yaml is a file, " + NOT_A_TOKENIZER),
    Row("tokenizer train --force over a trained run",
        lambda w, t: _tok_train(w, "--out", _copy(w.run, t / "run"), "--force"),
        r"run is a trained run folder \(it holds checkpoints/ or latest\), " + NOT_A_TOKENIZER),
    Row("tokenizer train --force over a folder of other files",
        lambda w, t: _tok_train(w, "--out", _old_file(t / "stuff", "a.txt").parent, "--force"),
        r"stuff is not a tokenizer folder \(it lacks config\.yaml, model\.safetensors, metrics\.json\): "
        r"choose another output folder"),
    Row("tokenizer train tokenizer.path=<run folder>", lambda w, t: _tok_train(w, f"tokenizer.path={w.run}"),
        r"^(?!.*--force).*run is a trained run folder .*" + NOT_A_TOKENIZER),
    Row("tokenizer train of a config without tokenizer:",
        lambda w, t: ["tokenizer", "train", w.cfg, "--out", t / "tok", "--no-progress"],
        r"tiny\.yaml: this config has no `tokenizer:` section: add one \(see configs/mnist_masked\.yaml\)"),
    Row("bench --json names a folder", lambda w, t: _bench(w, _mkdir(t / "out")),
        r"--json \S*out is a folder: name a file ending in \.json instead, e\.g\. \S*out/bench\.json"),
    Row("bench --json under a file", lambda w, t: _bench(w, _old_file(t, "f") / "b.json"),
        r"--json \S*b\.json: \S*f is a file, not a folder: choose another path"),
    Row("bench --json is the config file", lambda w, t: _bench(w, w.cfg),
        r"--json \S*\.yaml does not end in \.json: name a file ending in \.json"),
    Row("tokenizer eval --out is the tokenizer's weights", lambda w, t: _tok_eval(w, w.tok / "model.safetensors"),
        r"--out \S*model\.safetensors does not end in \.json"),
    Row("tokenizer eval --out names a folder", lambda w, t: _tok_eval(w, _mkdir(t / "rep")),
        r"--out \S*rep is a folder: name a file ending in \.json instead, e\.g\. \S*rep/report\.json"),
    Row("tokenizer eval --out under a file", lambda w, t: _tok_eval(w, _old_file(t, "f") / "r.json"),
        r"--out \S*r\.json: \S*f is a file, not a folder: choose another path"),
    Row("sample --out whose .json record is a folder", _sample_beside_a_folder,
        r"--out \S*x\.npz: the record \S*x\.json written beside it is a folder: move it away or choose another "
        r"--out name"),
    Row("sample a masked run whose tokenizer folder is gone", _masked_run_without_tokenizer,
        r"^elt: warning: the run's own tokenizer \S*mrun/tokenizer is missing; using tokenizer\.path \S*tok "
        r"instead, which gives wrong images unless it is the tokenizer the run was trained with", rc=0,
        check=_wrote_samples),
]


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
    assert rc == row.rc, f"exit code {rc}, stderr: {err!r}"
    if row.rc == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("elt: error: "), f"not one `elt: error:` line: {err!r}"
        assert re.search(row.message, lines[0]), f"{lines[0]!r} does not match {row.message!r}"
        assert tree_snapshot(world.root, here) == before, "files changed, appeared or vanished"
        return
    lines = [line for line in err.splitlines() if line.startswith("elt:")]  # besides progress bars
    assert "Traceback" not in err
    if row.message is None:
        assert not lines, f"unexpected `elt:` lines: {lines}"
    else:
        assert len(lines) == 1 and re.search(row.message, lines[0]), f"not the one expected line: {lines}"
    assert tree_snapshot(world.root) == _under(before, world.root), "the shared inputs changed"
    after = tree_snapshot(here)
    for path, entry in _under(before, here).items():
        assert entry[0] == "dir" or after.get(path) == entry, f"{path} changed or vanished"
    row.check(world, here)


def _under(snap: dict, root: Path) -> dict:
    """The entries of a snapshot under `root`."""
    return {p: v for p, v in snap.items() if p == str(root) or p.startswith(str(root) + "/")}


def test_rows_are_distinct():
    assert len({r.id for r in ROWS}) == len(ROWS)
