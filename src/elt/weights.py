"""Writing a state dict as safetensors: the one place that detaches, moves to the CPU and unshares tensors."""
from __future__ import annotations

import os

import torch
from safetensors.torch import save_file


def cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses views and tensors that share memory)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_weights(state: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Write `state` (e.g. `module.state_dict()`) to a .safetensors file at `path` (not atomic: write into a
    staged folder or an `atomic_path`)."""
    save_file(cpu_state(state), str(path))
