"""torch.distributed set-up for `torchrun` (DDP over gloo on CPU, NCCL on GPU); a no-op in one process."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .device import resolve_device
from .errors import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_pref: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun; pick the device."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError("WORLD_SIZE, RANK and LOCAL_RANK must be integers: launch with torchrun, or unset them "
                          "for a one-process run") from None
    if world > 1 and "MASTER_ADDR" not in os.environ:
        raise ConfigError(f"WORLD_SIZE={world} but MASTER_ADDR is not set: launch with `torchrun --nproc_per_node="
                          f"{world} -m elt.cli train ...`, or unset WORLD_SIZE and RANK for a one-process run")
    no_cuda = ConfigError("train.device=cuda but no CUDA device is visible: use train.device=cpu or auto")
    device = resolve_device(device_pref, no_cuda, index=local)
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, device)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
