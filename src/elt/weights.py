"""State dicts in and out: writing safetensors (the one place that detaches, moves to the CPU and unshares
tensors) and strict loading with a short, one-line mismatch message."""
from __future__ import annotations

import os
from collections.abc import Callable

import torch
from safetensors.torch import save_file


def cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses views and tensors that share memory)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_weights(state: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Write `state` (e.g. `module.state_dict()`) to a .safetensors file at `path` (not atomic: write into a
    staged folder or an `atomic_path`)."""
    save_file(cpu_state(state), str(path))


def state_mismatch(own: dict, state: dict) -> str:
    """'' when `state` fits a module whose state_dict is `own`, else a short list of what does not."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    return "; ".join(f"{name}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
                     for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong))
                     if keys)


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor],
                error: Callable[[str], Exception], load: Callable[[dict], object] | None = None) -> None:
    """`module.load_state_dict(state)` (strict); on a mismatch raise `error(detail)` instead of a wall of keys,
    where `detail` is state_mismatch's short list. `load`: what loads a checked state instead (a sharded
    module's scatter)."""
    detail = state_mismatch(module.state_dict(), state)
    if detail:
        raise error(detail)
    (load or module.load_state_dict)(state)


__all__ = ["cpu_state", "load_strict", "save_weights", "state_mismatch"]
