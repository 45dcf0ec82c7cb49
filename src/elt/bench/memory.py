"""Peak tensor memory of one call, the same quantity on CPU and CUDA:

    peak = bytes of the model's own tensors alive before the call (weights, optimizer state, inputs)
         + the highest amount of tensor memory the call allocated on top of them.

CUDA reads the caching allocator's counters (torch.cuda.max_memory_allocated). PyTorch keeps no such
counter for CPU, so there a dispatch mode adds up the storages that operators create and subtracts them
when they are freed (live tensor bytes, not the process's resident memory; allocator overhead excluded).
"""
from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (views and tied weights counted once)."""
    seen, total = set(), 0
    for t in tensors:
        st = t.untyped_storage()
        if st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            total += st.nbytes()
    return total


class LiveTensorBytes(TorchDispatchMode):
    """Tracks bytes of storages created inside the mode that are still alive (`current`) and their max (`peak`)."""

    def __init__(self):
        super().__init__()
        self.current = self.peak = 0
        self._live: set[int] = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self.current -= nbytes
        self._live.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                key = st.data_ptr()
                if key and key not in self._live:  # new storage (views and in-place results are not)
                    self._live.add(key)
                    self.current += st.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(st, self._freed, key, st.nbytes())
        return out


def peak_call_bytes(fn: Callable[[], object], device: torch.device, own: Iterable[torch.Tensor]) -> dict:
    """Run `fn` once -> {"bytes": own tensors + peak extra allocation, "own_bytes", "method"}."""
    own_bytes = tensor_bytes(own)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize()
        extra, method = torch.cuda.max_memory_allocated(device) - start, "torch.cuda.max_memory_allocated"
    else:
        with LiveTensorBytes() as live:
            fn()
        extra, method = live.peak, "live tensor storage bytes (dispatch-mode tracker)"
    return {"bytes": own_bytes + extra, "own_bytes": own_bytes, "method": method}


def process_max_rss_bytes() -> int:
    """Resident-set high-water mark of this whole process so far (Python, libraries, every model)."""
    import resource  # Unix only

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux
