"""How the trainer is spread over processes: one strategy object for wrapping, state dicts and collectives.

`DataParallel` is DDP (gloo on CPU, NCCL on GPU) and a no-op in one process; `train.parallel: fsdp` picks the
sharded strategy of `sharded.py` (FSDP2's `fully_shard`). The trainer only calls the methods below: `shard`
(before the optimizer is built), `wrap`, `full_state_dict` / `full_optimizer_state` (gather: every rank calls
them, only the main rank writes), `load_*` (every rank reads the full checkpoint), `local` (a norm as a plain
tensor), `sampling_model`, `rank_slice`, `barrier`, `mean`. Checkpoints are the same files under both, so a
run resumes under either strategy and any world size.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import distributed
from ..checkpoint import load_weights
from ..distributed import DistInfo
from .optim import load_optimizer_state


class DataParallel:
    """Data parallelism with replicated weights (DDP); `info` says this process's rank, world and device."""

    def __init__(self, info: DistInfo):
        self.info = info

    @classmethod
    def setup(cls, device_pref: str = "auto") -> "DataParallel":
        """Join the process group when launched by torchrun and pick the device."""
        return cls(distributed.setup(device_pref))

    @staticmethod
    def for_config(t) -> "DataParallel":
        """The strategy a TrainConfig asks for (train.parallel), set up on train.device."""
        if t.parallel == "fsdp":
            from .sharded import FullyShardedDataParallel

            return FullyShardedDataParallel.setup(t.device, t.precision)
        return DataParallel.setup(t.device)

    def shard(self, model: nn.Module) -> nn.Module:
        """Called on the model and on its EMA copy before the optimizer is built: replicated here."""
        return model

    def local(self, value: torch.Tensor) -> torch.Tensor:
        """A scalar computed from the parameters (a gradient or weight norm) as a plain tensor."""
        return value

    def sampling_model(self, model: nn.Module, build) -> nn.Module | None:
        """A model the main rank can sample alone (every rank calls this): `model` itself here; `build()`
        makes an empty copy where the weights are sharded. None on the other ranks."""
        return model if self.is_main else None

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    @property
    def device(self) -> torch.device:
        return self.info.device

    def rank_slice(self, global_batch: int) -> slice:
        """This rank's rows of a global batch (the batch size is a multiple of the world size)."""
        b = global_batch // self.info.world
        return slice(self.info.rank * b, (self.info.rank + 1) * b)

    def wrap(self, model: nn.Module, compile: bool = False) -> nn.Module:
        """The module the training step calls: DDP over `model` when there are several processes, then
        torch.compile if asked. `model` itself keeps the parameters the optimizer and EMA see."""
        net = model
        if self.info.world > 1:
            device = self.info.device
            net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        return torch.compile(net) if compile else net

    def full_state_dict(self, model: nn.Module) -> dict:
        """The unsharded weights (called on every rank; the main rank writes them)."""
        return model.state_dict()

    def full_optimizer_state(self, model: nn.Module, opt: torch.optim.Optimizer) -> dict:
        """The unsharded optimizer state (called on every rank; the main rank writes it)."""
        return opt.state_dict()

    def load_state_dict(self, model: nn.Module, state: dict, source: str) -> None:
        """Load full weights into `model` (strict, with a short message naming a mismatch)."""
        load_weights(model, state, source)

    def load_optimizer_state(self, model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
        """Load a full optimizer state (either parameter-group layout, see elt.train.optim)."""
        load_optimizer_state(opt, model, state)

    def barrier(self) -> None:
        distributed.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a tensor (for logged scalars); the tensor itself in one process."""
        if self.info.world == 1 or not (dist.is_available() and dist.is_initialized()):
            return values
        out = values.detach().clone()
        dist.all_reduce(out)
        return out / self.info.world

    def teardown(self) -> None:
        distributed.teardown()
