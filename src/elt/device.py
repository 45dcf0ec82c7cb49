"""Which torch device a run uses: the one rule for "auto", "cpu", "cuda" and "cuda:N"."""
from __future__ import annotations

import torch


def resolve_device(pref: str | torch.device | None, no_cuda: Exception, index: int | None = None) -> torch.device:
    """"auto" (or None) -> CUDA when visible, else CPU; a CUDA device that is not visible raises `no_cuda`.

    `index`: the CUDA device index to use for plain "cuda" / "auto" (a torchrun process's LOCAL_RANK);
    an explicit "cuda:N" keeps its N."""
    name = "auto" if pref is None else str(pref)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise no_cuda
    if name == "cuda" and index is not None:
        name = f"cuda:{index}"
    return torch.device(name)


__all__ = ["resolve_device"]
