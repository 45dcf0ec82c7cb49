"""What the samplers of both families share: classifier-free guidance, per-step loop counts, image output."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..codecs.pixel import to_uint8  # noqa: F401  (B, C, *S) in [-1, 1] -> uint8 (B, *S, C), for the samplers


def guided_call(model, inputs: tuple[torch.Tensor, ...], y: torch.Tensor, loops: int, cfg: float,
                upcast: bool = False) -> torch.Tensor:
    """model(*inputs, y, loops) with classifier-free guidance u + cfg·(c − u); cfg = 1 is plain conditional.
    The inputs are repeated for the unconditional half (null label). `upcast` mixes in fp32."""
    if cfg == 1.0:
        out = model(*inputs, y, loops=loops)
        return out.float() if upcast else out
    null = torch.full_like(y, model.null_label)
    both = model(*(torch.cat([a, a]) for a in inputs), torch.cat([y, null]), loops=loops)
    cond, uncond = (both.float() if upcast else both).chunk(2)
    return uncond + cfg * (cond - uncond)


def loop_schedule(loops: int | Sequence[int], steps: int) -> list[int]:
    """One loop count per sampling step: an int for every step, or a sequence of exactly `steps` counts."""
    if isinstance(loops, int):
        return [loops] * steps
    loops = list(loops)
    if len(loops) != steps:
        raise ValueError(f"a per-step loop schedule needs {steps} entries, got {len(loops)}")
    return loops
