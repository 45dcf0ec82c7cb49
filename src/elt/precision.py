"""Numeric precision of a run: the accepted names, their check and their autocast context.

"bf16" runs the network under bf16 autocast (weights, optimizer state and sampler state stay fp32);
"fp32" runs without autocast. fp16 is not supported (no loss scaling anywhere).
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("bf16", "fp32")


def check_precision(name: str, value, error_cls: type[Exception] = ValueError, note: str = "") -> None:
    """Raise `error_cls` naming `name` unless `value` is one of PRECISIONS (`note` is appended in brackets)."""
    if value not in PRECISIONS:
        extra = f" ({note})" if note else ""
        raise error_cls(f"{name} must be 'bf16' or 'fp32'{extra}, got {value!r}")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """A fresh context: bf16 autocast on `device` for "bf16", no autocast for "fp32"."""
    check_precision("precision", precision)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


__all__ = ["PRECISIONS", "autocast", "check_precision"]
