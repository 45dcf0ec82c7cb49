"""Sampling a trained run from Python: load it once, then draw images at any loop count with a progress bar."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..budget import Budget, BudgetSchedule
from .request import SampleRequest


@dataclass
class LoadedRun:
    """A trained run ready to sample: EMA model (eval mode), its Config and the family's sampler."""

    run_dir: str
    checkpoint: Path  # the checkpoint folder the weights come from
    model: torch.nn.Module
    cfg: object  # elt.config.Config
    sampler: Callable  # elt.sampling.request.Sampler: sampler(SampleRequest) -> uint8 (N, *S, C)

    @property
    def step(self) -> int | None:
        """The training step of the checkpoint (None for a folder not named step_XXXXXXX)."""
        name = self.checkpoint.name
        return int(name[5:]) if name.startswith("step_") and name[5:].isdigit() else None


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """A run folder (its `latest` checkpoint) or one checkpoint folder -> LoadedRun for either family, its
    model (and a masked run's tokenizer) on `device`."""
    from ..checkpoint import find_checkpoint
    from ..family import build_family
    from ..models import from_pretrained

    ckpt = find_checkpoint(run_dir)
    model, cfg = from_pretrained(ckpt, device=device)
    return LoadedRun(str(run_dir), ckpt, model, cfg, build_family(cfg).sampler(model, str(run_dir)))


def generate(sampler: Callable, labels: torch.Tensor, loops: int | Budget | list[int | Budget], steps: int,
             guidance: float, seed: int, batch_size: int | None, precision: str, desc: str | None = None,
             uncond: int | Budget | None = None, guide: str = "cfg", first_index: int = 0, halt=None,
             trace: list | None = None) -> torch.Tensor:
    """Sample with a progress bar (desc "" hides it) -> uint8 (N, H, W, C) for labels (N,); `loops` a count,
    a Budget or one per step; `uncond` the budget of the guiding branch (None: as `loops`), `guide` its label
    ("cfg": the null label; "autoguidance": the same label); labels[j] is sample first_index + j of the set;
    `halt`/`trace`: per-sample adaptive loops (SampleRequest)."""
    shown = f"L={loops.loops} J={loops.latents}" if isinstance(loops, Budget) else f"L={loops}"
    if guide != "cfg":  # the label of the guiding branch travels inside the per-step schedule
        loops, uncond = BudgetSchedule.of(loops, steps, uncond, guide), None
    with tqdm(total=len(labels), desc=desc or f"sample {shown}", unit="img", disable=desc == "") as bar:
        return sampler(SampleRequest(labels, loops, steps, guidance, uncond=uncond, seed=seed, batch_size=batch_size,
                                     precision=precision, progress=bar, first_index=first_index, halt=halt,
                                     trace=trace))
