"""Run logs: log.jsonl always; TensorBoard scalars and sample grids when train.tensorboard is on."""
from __future__ import annotations

import json

import numpy as np
import pytest

from elt.train import Trainer
from elt.train.logs import RunLog


def test_jsonl_rows_are_appended_without_tensorboard(tmp_path):
    log = RunLog(tmp_path)
    log.row({"step": 1, "loss": 0.5})
    log.row({"step": 2, "loss": 0.25, "student_loops": None})
    log.image("samples", np.zeros((4, 4, 1), np.uint8), 2)  # no TensorBoard: nothing to do
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25, "student_loops": None}]
    assert not (tmp_path / "tensorboard").exists()


class FakeWriter:
    """Stands in for torch.utils.tensorboard.SummaryWriter: records what it is given."""

    made = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.images, self.closed = log_dir, [], [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_image(self, tag, image, step, dataformats):
        self.images.append((tag, image.shape, step, dataformats))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_wiring_rows_and_grids(make_config, tiny_dataset, tmp_path, monkeypatch):
    """Every numeric column of every log row becomes a scalar at its step; the final sample grid an image."""
    import sys
    import types

    import elt.train.logs as logs

    monkeypatch.setattr(logs, "tensorboard_available", lambda: True)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    FakeWriter.made.clear()
    run = tmp_path / "run"
    Trainer(make_config("train.steps=4", "train.log_every=2", "train.tensorboard=true"), run, progress=False).fit()
    (board,) = FakeWriter.made
    assert board.log_dir == str(run / "tensorboard") and board.closed
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    want = [(f"train/{k}", v, r["step"]) for r in rows for k, v in r.items()
            if k != "step" and isinstance(v, (int, float))]
    assert board.scalars == want and {t for t, _, _ in want} >= {"train/loss", "train/lr", "train/student_loops"}
    assert [(tag, step, fmt) for tag, _, step, fmt in board.images] == [("samples", 4, "HWC")]


def test_tensorboard_gets_the_logged_scalars_and_sample_grids(make_config, tiny_dataset, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    Trainer(make_config("train.steps=4", "train.log_every=2", "train.tensorboard=true"), run, progress=False).fit()
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert losses == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in rows]
    assert "train/grad_norm" in events.Tags()["scalars"] and "train/student_loops" in events.Tags()["scalars"]
    assert [e.step for e in events.Images("samples")] == [4]
