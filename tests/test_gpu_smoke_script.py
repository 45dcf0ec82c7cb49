"""benchmarks/gpu_smoke.py, the first GPU run's script, runs its whole path on a CPU with a tiny size (DDP and
FSDP over 2 gloo ranks, synthetic latents) and reports every variant: it must not rot before a GPU is at hand."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_gpu_smoke_runs_on_cpu(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    env["OMP_NUM_THREADS"] = "1"
    out = tmp_path / "smoke.json"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_addr=127.0.0.1", f"--master_port={port}", str(ROOT / "benchmarks/gpu_smoke.py"),
                           "--device", "cpu", "--size", "ELT-MNIST/7-2x4", "--batch", "2", "--steps", "2",
                           "--warmup", "1", "--variants", "ddp", "fsdp", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [r["parallel"] for r in res["rows"]] == ["ddp", "fsdp"] and res["world"] == 2
    for r in res["rows"]:
        assert r["step_s"] > 0 and 0 < r["mfu_measured_peak"] < 1.5 and r["samples_per_s"] > 0
