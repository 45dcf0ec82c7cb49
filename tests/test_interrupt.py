"""Ctrl-C (SIGINT) during `elt train` saves a whole-step checkpoint, exits 130, and --resume finishes the run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from elt.checkpoint import find_checkpoint, load_train_state


def test_sigint_saves_checkpoint_and_resume_finishes(tiny_cfg_dict, tmp_path):
    cfg = tiny_cfg_dict()
    cfg["train"].update({"steps": 100000, "ckpt_every": 100000, "log_every": 1})
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "elt.cli", "train", str(cfg_path), "--out", str(run),
                             "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "log.jsonl").is_file():  # wait until it is training
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "saving a checkpoint" in err
    state = load_train_state(find_checkpoint(run))
    logged = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert state["step"] >= 1 and state["step"] == logged[-1]  # the checkpoint holds the last whole step
    assert not list(run.rglob(".tmp-*"))

    cfg["train"]["steps"] = state["step"] + 2
    cfg_path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, "-m", "elt.cli", "train", str(cfg_path), "--out", str(run), "--resume",
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "train.steps 100000 -> " in done.stderr  # a changed schedule is refused ...
    done = subprocess.run([sys.executable, "-m", "elt.cli", "train", str(cfg_path), "--out", str(run), "--resume",
                           "--allow-changes", "--no-progress"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # ... unless accepted explicitly
    assert load_train_state(find_checkpoint(run))["step"] == state["step"] + 2
