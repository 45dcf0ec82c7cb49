"""Where the trainer's rows and sample grids go: RUN_DIR/log.jsonl always, TensorBoard when asked.

TensorBoard (train.tensorboard: true) writes RUN_DIR/tensorboard/ with every numeric column of a log row as
a scalar and every sample grid as an image; it needs the `tensorboard` package.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from ..config import ConfigError


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def check_tensorboard(enabled: bool) -> None:
    """A one-line error, before anything is written, when TensorBoard is asked for but not installed."""
    if enabled and not tensorboard_available():
        raise ConfigError("train.tensorboard=true needs the tensorboard package: pip install tensorboard, "
                          "or set train.tensorboard=false (log.jsonl is written either way)")


class RunLog:
    """Appends log rows (JSON lines, and TensorBoard scalars when enabled); only the main rank makes one."""

    def __init__(self, run_dir: Path, tensorboard: bool = False):
        self.path = Path(run_dir) / "log.jsonl"
        self.board = None
        if tensorboard:
            check_tensorboard(True)
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def row(self, values: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(values) + "\n")
        if self.board is not None:
            step = values["step"]
            for key, value in values.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.board.add_scalar(f"train/{key}", value, step)
            self.board.flush()

    def image(self, tag: str, grid: np.ndarray, step: int) -> None:
        """A uint8 (H, W, C) or (H, W) image, to TensorBoard only (the PNG is written by the caller)."""
        if self.board is not None:
            self.board.add_image(tag, grid if grid.ndim == 3 else grid[..., None], step, dataformats="HWC")
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None
