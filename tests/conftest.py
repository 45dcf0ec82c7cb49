"""Shared fixtures: a tiny offline image-folder data set and tiny configs (CPU, fp32, one thread)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from elt.config import load_config

torch.set_num_threads(1)  # speed on small CPUs and run-to-run determinism

NUM_CLASSES = 3
PER_CLASS = 20
SIDE = 8

# A tiny ELT-DiT: 8×8 grey images, patch 4 (4 tokens), dim 32, 2 heads, N=2 blocks, L_max=3.
TINY = {
    "family": "flow",
    "model": {"image_size": SIDE, "channels": 1, "patch": 4, "dim": 32, "heads": 2, "blocks": 2,
              "mlp_ratio": 2.0, "num_classes": NUM_CLASSES},
    "objective": {"kind": "rectified_flow"},
    "data": {"name": None, "image_size": SIDE, "channels": 1},
    "train": {"mode": "ilsd", "loops": 3, "min_loops": 1, "steps": 8, "batch_size": 8, "lr": 1e-3,
              "warmup_steps": 2, "precision": "fp32", "device": "cpu", "log_every": 2, "sample_every": 0,
              "ckpt_every": 4, "seed": 0},
    "sample": {"steps": 2, "cfg": 1.0},
}


def class_pattern(k: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (SIDE, SIDE): horizontal bars, vertical bars or a checkerboard, with random contrast/noise."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    base = [(yy // 2) % 2, (xx // 2) % 2, (yy // 2 + xx // 2) % 2][k % 3].astype(np.float64)
    hi, lo = rng.uniform(180, 255), rng.uniform(0, 60)
    img = lo + (hi - lo) * base + rng.normal(0, 8, size=base.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def write_tiny_image_folder(root: Path, num_classes: int = NUM_CLASSES, per_class: int = PER_CLASS) -> Path:
    """root/class_k/img_ii.png, grey SIDE×SIDE; deterministic."""
    rng = np.random.default_rng(1234)
    for k in range(num_classes):
        d = root / f"class_{k}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(class_pattern(k, rng), mode="L").save(d / f"img_{i:02d}.png")
    return root


def flatten_overrides(d: dict, prefix: str = "") -> list[str]:
    out = []
    for key, val in d.items():
        path = f"{prefix}{key}"
        if isinstance(val, dict):
            out += flatten_overrides(val, path + ".")
        else:
            out.append(f"{path}={val}")
    return out


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A read-only image folder shared by every test (3 classes × 20 grey 8×8 PNGs)."""
    return write_tiny_image_folder(tmp_path_factory.mktemp("tiny_images"))


@pytest.fixture(autouse=True)
def _one_process(monkeypatch):
    """Trainers built in tests are one-process runs, whatever the outer environment says."""
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def tiny_dataset(tiny_data_dir, monkeypatch, tmp_path) -> Path:
    """Training works without network: the image folder path to use as `data.name`."""
    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))
    return tiny_data_dir


@pytest.fixture(scope="session")
def tiny_cfg_dict(tiny_data_dir):
    """Callable -> a fresh nested dict of the tiny config (for YAML files), data pointing at the tiny folder."""

    def make() -> dict:
        d = copy.deepcopy(TINY)
        d["data"]["name"] = str(tiny_data_dir)
        return d

    return make


@pytest.fixture(scope="session")
def make_config(tiny_cfg_dict):
    """Callable(*overrides) -> a validated tiny Config built with `load_config(None, overrides)`."""

    def make(*overrides: str):
        return load_config(None, flatten_overrides(tiny_cfg_dict()) + list(overrides))

    return make


def randomize_(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Overwrite every parameter with N(0, std) (so adaLN-Zero / zero-init layers do something)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture
def randomize():
    return randomize_


def interrupt_at(trainer, step: int) -> None:
    """Run trainer.fit() and stop it with a KeyboardInterrupt (as Ctrl-C would) just before `step`."""
    orig = trainer.train_step

    def stop(s):
        if s == step:
            raise KeyboardInterrupt
        return orig(s)

    trainer.train_step = stop
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()


def tree_snapshot(*roots: Path) -> dict:
    """Every file's bytes and mtime and every folder's mtime under the roots (for "nothing changed on disk")."""
    snap = {}
    for root in roots:
        for p in sorted([root, *root.rglob("*")]):
            st = p.stat()
            snap[str(p)] = ("dir", st.st_mtime_ns) if p.is_dir() else (p.read_bytes(), st.st_mtime_ns)
    return snap


@pytest.fixture
def tiny_latent_run(tiny_cfg_dict, tmp_path, monkeypatch):
    """A tiny flow run with a latent interface (2×2 windows, 3 latents per group), 3 steps at a large lr so the
    zero-initialised output layer moves off zero -> (config path, run folder)."""
    import yaml

    from elt.cli import main

    monkeypatch.setenv("ELT_CACHE", str(tmp_path / "cache"))
    d = tiny_cfg_dict()
    d["model"] |= {"patch": 2, "latent": {"window": [2, 2], "latents_per_group": 3}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "c.yaml"), "train.steps=3", "train.lr=0.01", "--out", str(run),
                 "--no-progress"]) == 0
    return tmp_path / "c.yaml", run


def assert_one_clear_line(argv: list, message: str, roots: tuple[Path, ...], capsys) -> None:
    """`elt argv` fails with exit code 2 and one `elt: error:` line matching `message`, and nothing under the
    roots changed (the bad-input tables' contract)."""
    import re

    from elt.cli import main

    before = tree_snapshot(*roots)
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert rc == 2, f"exit code {rc}, stderr: {err!r}"
    assert len(lines) == 1 and lines[0].startswith("elt: error: "), f"not one `elt: error:` line: {err!r}"
    assert re.search(message, lines[0]), f"{lines[0]!r} does not match {message!r}"
    assert tree_snapshot(*roots) == before, "files changed, appeared or vanished"
