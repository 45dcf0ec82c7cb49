"""Two CPU processes (gloo, launched by torchrun) equal one process with the same global batch and seed."""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file

from elt.checkpoint import find_checkpoint, load_train_state
from elt.train import train

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _masked_cfg(tiny_data_dir, tmp_path) -> dict:
    from test_masked_e2e import TINY_MASKED

    cfg = copy.deepcopy(TINY_MASKED)
    cfg["data"]["name"] = str(tiny_data_dir)
    cfg["tokenizer"]["path"] = str(tmp_path / "tok")  # trained by rank 0 while rank 1 waits
    return cfg


@pytest.mark.parametrize("family", ["flow", "masked"])
def test_two_processes_equal_one_process(tiny_cfg_dict, tiny_data_dir, tmp_path, family):
    cfg = tiny_cfg_dict() if family == "flow" else _masked_cfg(tiny_data_dir, tmp_path)
    cfg["train"].update({"mode": "ilsd", "steps": 4, "batch_size": 8, "ckpt_every": 100, "label_dropout": 0.25,
                         "lr": 1e-3, "warmup_steps": 1})
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))

    port = _free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}",
           "-m", "elt.cli", "train", str(cfg_path), "--out", str(tmp_path / "ddp"), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    from elt.config import load_config
    train(load_config(cfg_path), tmp_path / "single", progress=False)

    ddp = load_train_state(find_checkpoint(tmp_path / "ddp"))
    one = load_train_state(find_checkpoint(tmp_path / "single"))
    assert ddp["step"] == one["step"] == 4
    for k, v in one["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=0, atol=1e-5, msg=f"raw weight {k}")
    ema_ddp = load_file(str(find_checkpoint(tmp_path / "ddp") / "model.safetensors"))
    ema_one = load_file(str(find_checkpoint(tmp_path / "single") / "model.safetensors"))
    for k, v in ema_one.items():
        torch.testing.assert_close(ema_ddp[k], v, rtol=0, atol=1e-5, msg=f"EMA weight {k}")
    # the runs moved away from the initial weights (the comparison is not trivially about untouched tensors)
    torch.manual_seed(0)
    from elt.models import build_model
    init = build_model(load_config(cfg_path)).state_dict()
    moved = [k for k in init if (init[k] - one["model"][k]).abs().max() > 1e-4]
    assert len(moved) > len(init) // 2
    # the logged loss terms are the mean over the ranks: the losses of the whole global batch, as in one process
    # (rank 0's alone are those of half the batch and differ by far more than the tolerance)
    rows = {name: [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
            for name in ("ddp", "single")}
    assert [r["step"] for r in rows["ddp"]] == [r["step"] for r in rows["single"]] == [2, 4]
    for a, b in zip(rows["ddp"], rows["single"]):
        for key in ("loss", "gt_teacher", "gt_student", "distill", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (a["step"], key)
    # only rank 0 wrote the run folder, once
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["step_0000004"]
    assert (tmp_path / "ddp" / "summary.json").is_file()
