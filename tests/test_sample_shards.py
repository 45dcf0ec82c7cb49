"""Sample sets drawn in chunks over any number of processes (`elt sample --num-samples N [--chunk C]`, torchrun): every
sample's noise is a function of (seed, its index), so the file is the same for 1 and 2 processes, any chunk and
batch size, and a killed job finishes by drawing only its missing chunks."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml

import elt.sampling.generate as generate_module
from elt.cli import main
from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.models.masked import MaskedModelConfig, MaskedTransformer
from elt.objectives.flow import Diffusion, ObjectiveConfig, RectifiedFlow
from elt.sampling import flow as flow_sampling
from elt.sampling.masked import DecodeSettings, sample_tokens
from conftest import randomize_


@pytest.fixture(scope="module")
def ddpm_run(tiny_cfg_dict, tmp_path_factory):
    """A tiny x0-diffusion run (DDPM sampler: fresh noise at every step), 3 steps at a large lr so its output
    layer moves off zero and the samples depend on the noise."""
    root = tmp_path_factory.mktemp("ddpm_run")
    d = tiny_cfg_dict()
    d["objective"] = {"kind": "diffusion"}
    (root / "c.yaml").write_text(yaml.safe_dump(d))
    assert main(["train", str(root / "c.yaml"), "train.steps=3", "train.lr=0.01", "--out", str(root / "run"),
                 "--no-progress"]) == 0
    return root / "run"


def _arrays(path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        return z["arr_0"], z["arr_1"]


ARGS = ["--num-samples", "10", "--steps", "4", "--cfg", "1"]


def test_one_and_two_processes_any_chunk_and_batch_give_the_same_set(ddpm_run, tmp_path):
    assert main(["sample", str(ddpm_run), *ARGS, "--chunk", "3", "--out", str(tmp_path / "one.npz")]) == 0
    assert main(["sample", str(ddpm_run), *ARGS, "--chunk", "10", "--batch-size", "4",
                 "--out", str(tmp_path / "big.npz")]) == 0
    if dist.is_available() and dist.is_gloo_available():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                               "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "elt.cli", "sample",
                               str(ddpm_run), *ARGS, "--chunk", "3", "--out", str(tmp_path / "two.npz")],
                              env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        names = ("one", "big", "two")
    else:
        names = ("one", "big")
    images, labels = _arrays(tmp_path / "one.npz")
    assert images.shape == (10, 8, 8, 1) and labels.tolist() == [i % 3 for i in range(10)]  # balanced
    assert not np.array_equal(images[0], images[3])  # same class, other noise: the noise matters
    for name in names[1:]:
        other, other_labels = _arrays(tmp_path / f"{name}.npz")
        assert np.array_equal(other, images) and np.array_equal(other_labels, labels), name
        assert not (tmp_path / f"{name}.parts").exists()  # merged and cleaned up


def test_a_killed_job_draws_only_its_missing_chunks(ddpm_run, tmp_path, monkeypatch):
    assert main(["sample", str(ddpm_run), *ARGS, "--chunk", "3", "--out", str(tmp_path / "whole.npz")]) == 0
    real, calls = generate_module.generate, []

    def dies_on_the_third_chunk(*args, **kwargs):
        calls.append(kwargs["first_index"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generate_module, "generate", dies_on_the_third_chunk)
    out = tmp_path / "killed.npz"
    assert main(["sample", str(ddpm_run), *ARGS, "--chunk", "3", "--out", str(out)]) == 130  # interrupted
    assert not out.exists() and sorted(p.name for p in out.with_suffix(".parts").glob("*.npz")) == \
        ["000000000.npz", "000000003.npz"]
    calls.clear()
    monkeypatch.setattr(generate_module, "generate", lambda *a, **k: calls.append(k["first_index"]) or real(*a, **k))
    assert main(["sample", str(ddpm_run), *ARGS, "--chunk", "3", "--out", str(out)]) == 0
    assert calls == [6, 9]  # the finished chunks were kept, not drawn again
    assert np.array_equal(_arrays(out)[0], _arrays(tmp_path / "whole.npz")[0])


@pytest.mark.parametrize("objective", ["rectified_flow", "diffusion"])
def test_flow_sample_i_depends_on_its_index_only(objective):
    torch.manual_seed(0)
    model = randomize_(FlowTransformer(FlowModelConfig(image_size=8, channels=1, patch=4, dim=32, heads=2,
                                                       blocks=1, mlp_ratio=2.0, num_classes=3))).eval()
    cfg = ObjectiveConfig(kind=objective)
    process = RectifiedFlow(cfg) if objective == "rectified_flow" else Diffusion(cfg)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    whole = flow_sampling.sample_images(model, process, labels, 2, 3, seed=4, batch_size=7)
    part = flow_sampling.sample_images(model, process, labels[3:6], 2, 3, seed=4, batch_size=2, first_index=3)
    assert torch.equal(part, whole[3:6])
    assert not torch.equal(whole[0], whole[3])


def test_masked_sample_i_depends_on_its_index_only():
    torch.manual_seed(0)
    model = randomize_(MaskedTransformer(MaskedModelConfig(codebook_size=8, grid=3, dim=32, heads=2, blocks=1,
                                                           num_classes=3))).eval()
    settings = DecodeSettings(steps=3, cfg=1.0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    whole = sample_tokens(model, labels, 2, settings, seed=2, batch_size=6)
    part = sample_tokens(model, labels[2:5], 2, settings, seed=2, batch_size=2, first_index=2)
    assert torch.equal(part, whole[2:5])
