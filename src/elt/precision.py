"""Numeric precision of a run: the accepted names, their check, what "auto" means here, and the autocast context.

"bf16" runs the network under bf16 autocast (weights, optimizer state and sampler state stay fp32);
"fp32" runs without autocast; "auto" (the default) is bf16 where the device has bf16 matrix units (CUDA GPUs
that support it, CPUs with AVX-512 BF16 or AMX) and fp32 elsewhere: on a CPU without them, bf16 matmuls take a
slow emulated path (measured on a 2-core AVX2 CPU: ~1 GFLOP/s against ~50 for fp32, a training step 25× slower).
fp16 is not supported (no loss scaling anywhere).
"""
from __future__ import annotations

import contextlib
import warnings

import torch

from .errors import EltWarning

PRECISIONS = ("auto", "bf16", "fp32")


def check_precision(name: str, value, error_cls: type[Exception] = ValueError, note: str = "") -> None:
    """Raise `error_cls` naming `name` unless `value` is one of PRECISIONS (`note` is appended in brackets)."""
    if value not in PRECISIONS:
        extra = f" ({note})" if note else ""
        raise error_cls(f"{name} must be 'auto', 'bf16' or 'fp32'{extra}, got {value!r}")


def fast_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices natively (not through a slow emulation)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, p, lambda: False)() for p in probes)
    return False


def resolve_precision(precision: str, device: torch.device, warn: bool = True) -> str:
    """"bf16" or "fp32": what `precision` means on `device` ("auto" picks; an explicit "bf16" on a device
    without bf16 units is kept, with a warning that it is slow there unless `warn` is False)."""
    check_precision("precision", precision)
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if precision == "bf16" and warn and not fast_bf16(device):
        warnings.warn(f"bf16 on this {device.type} runs through a slow emulation (no AVX-512 BF16 / AMX units): "
                      f"expect it to be many times slower than fp32; use precision 'auto' or 'fp32'", EltWarning,
                      stacklevel=2)
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """A fresh context: bf16 autocast on `device` when `precision` resolves to "bf16", none for "fp32" (the
    entry points, which resolve the precision first, give the warning about emulated bf16)."""
    if resolve_precision(precision, device, warn=False) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


__all__ = ["PRECISIONS", "autocast", "check_precision", "fast_bf16", "resolve_precision"]
