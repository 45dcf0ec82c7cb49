"""train.parallel=fsdp (FSDP2, 2 CPU ranks over gloo) against one process: the same gradients, the same training
run, checkpoints in the one-process format both ways, and one all-gather of the looped core per step at any L."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file

from elt.checkpoint import find_checkpoint, load_train_state
from elt.config import load_config
from elt.train import train

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")
HERE = Path(__file__).resolve().parent


def _torchrun(args: list[str], cwd: Path | None = None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_sharded_gradients_equal_one_process_and_the_core_is_gathered_once_per_step(tmp_path):
    """The worker (tests/fsdp_worker.py): exits (1, L) of a looped model under FSDP, on half the batch per rank,
    give the full-batch gradients of one process; the step all-gathers twice (the root and the whole core, once
    each) and reduce-scatters twice, at L = 1 and at L = 4: communication does not grow with the loops."""
    out = tmp_path / "fsdp.json"
    _torchrun([str(HERE / "fsdp_worker.py"), str(out), "1", "4"], cwd=HERE)
    res = json.loads(out.read_text())
    for loops in ("1", "4"):
        r = res[loops]
        assert r["grad_norm"] > 1.0  # gradients that are not trivially zero
        assert r["max_grad_diff"] < 1e-5, r
        assert (r["all_gathers"], r["reduce_scatters"]) == (2, 2), r


def _write(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _weights(run: Path, step: int | None = None) -> tuple[dict, dict]:
    ckpt = find_checkpoint(run if step is None else run / "checkpoints" / f"step_{step:07d}")
    return load_train_state(ckpt), load_file(str(ckpt / "model.safetensors"))


def _assert_same(a: dict, b: dict, what: str, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=f"{what} {k}")


def test_fsdp_training_equals_one_process_and_checkpoints_cross_strategies(tiny_cfg_dict, tmp_path):
    """4 ILSD steps (fp32): the FSDP run's weights, EMA and logged losses equal one process's; its checkpoint is
    the one-process format (from_pretrained gives the same outputs); and an FSDP run resumed from the one-process
    run's step-2 checkpoint (weights, EMA, AdamW state loaded into shards) ends where that run ended."""
    cfg = tiny_cfg_dict()
    cfg["train"].update({"steps": 4, "ckpt_every": 2, "log_every": 1, "label_dropout": 0.25, "warmup_steps": 1})
    single_cfg = _write(cfg, tmp_path / "single.yaml")
    train(load_config(single_cfg), tmp_path / "single", progress=False)
    cfg["train"]["parallel"] = "fsdp"
    fsdp_cfg = _write(cfg, tmp_path / "fsdp.yaml")
    _torchrun(["-m", "elt.cli", "train", str(fsdp_cfg), "--out", str(tmp_path / "fsdp"), "--no-progress"])

    one, one_ema = _weights(tmp_path / "single")
    sharded, sharded_ema = _weights(tmp_path / "fsdp")
    assert one["step"] == sharded["step"] == 4
    _assert_same(sharded["model"], one["model"], "raw weight")
    _assert_same(sharded_ema, one_ema, "EMA weight")
    assert sharded["optimizer"]["param_groups"] == one["optimizer"]["param_groups"]  # index-keyed, like DDP's
    for i, moments in one["optimizer"]["state"].items():  # gathered AdamW moments, each under its own index
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sharded["optimizer"]["state"][i][key], moments[key], rtol=1e-4, atol=1e-7)
    rows = {n: [json.loads(r) for r in (tmp_path / n / "log.jsonl").read_text().splitlines()] for n in ("single",
                                                                                                      "fsdp")}
    assert [r["step"] for r in rows["fsdp"]] == [1, 2, 3, 4]
    for a, b in zip(rows["fsdp"], rows["single"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
    # the weights moved: the comparison is not about untouched tensors
    init = _weights(tmp_path / "single", 2)[0]["model"]
    assert any((init[k] - one["model"][k]).abs().max() > 1e-4 for k in init)

    from elt.models import from_pretrained

    a, _ = from_pretrained(find_checkpoint(tmp_path / "fsdp"))
    b, _ = from_pretrained(find_checkpoint(tmp_path / "single"))
    x, t, y = torch.randn(3, 1, 8, 8), torch.rand(3), torch.tensor([0, 1, 2])
    torch.testing.assert_close(a(x, t, y, loops=2), b(x, t, y, loops=2), rtol=0, atol=1e-5)

    # resume under FSDP from the one-process checkpoint of step 2 (its `latest` moved back to step 2)
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "single", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_0000004")
    (resumed / "latest").write_text("step_0000002\n")
    _torchrun(["-m", "elt.cli", "train", str(fsdp_cfg), "--out", str(resumed), "--resume", "--no-progress"])
    again, again_ema = _weights(resumed)
    assert again["step"] == 4
    _assert_same(again["model"], one["model"], "resumed raw weight")
    _assert_same(again_ema, one_ema, "resumed EMA weight")
