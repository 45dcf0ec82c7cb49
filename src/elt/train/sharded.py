"""FSDP2 (`torch.distributed.fsdp.fully_shard`) as the trainer's second parallel strategy (`train.parallel: fsdp`).

The whole looped core is one FSDP unit with `reshard_after_forward=False`, the rest of the model the root unit: the
core's weights are all-gathered once per step and reused by every loop and by the backward pass, so communication
does not grow with L (one unit per block would all-gather each block once per loop, twice with resharding, and
could not work here: the core computes every block's adaLN modulation once per forward, outside the block's own
call, where a per-block unit's parameters are still sharded). Parameters are gathered in bf16 when train.precision
is bf16 (the compute runs under autocast as in DDP; inputs are not cast, so the residual stream and the time
embedding stay fp32) and gradients are reduce-scattered in fp32. The EMA copy is sharded the same way and updated
shard by shard (no communication). Checkpoints hold the full, unsharded state dicts in the DDP format:
`from_pretrained` reads them unchanged and a run resumes under either strategy and any world size.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from .. import distributed
from ..checkpoint import load_weights
from ..precision import resolve_precision
from .optim import in_own_layout
from .parallel import DataParallel

GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)  # the main rank gets everything, on the CPU
SCATTER = StateDictOptions(full_state_dict=True)  # every rank passes the full state; each keeps its shard


class FullyShardedDataParallel(DataParallel):
    """Weights, gradients, optimizer state and EMA sharded over the ranks (FSDP2); one process: one shard."""

    def __init__(self, info, precision: str = "auto"):
        super().__init__(info)
        if not dist.is_initialized():  # one process: FSDP still needs a process group (of one)
            if "MASTER_ADDR" not in os.environ:
                from ..errors import ConfigError

                raise ConfigError("train.parallel=fsdp needs a process group: launch with torchrun (e.g. torchrun "
                                  "--nproc_per_node=2 -m elt.cli train ...), or use train.parallel=ddp in one "
                                  "process")
            dist.init_process_group(backend="nccl" if info.device.type == "cuda" else "gloo")
        self.mesh = init_device_mesh(info.device.type, (info.world,))
        # the trainer resolves the same precision and gives the warning about emulated bf16
        param_dtype = torch.bfloat16 if resolve_precision(precision, info.device, warn=False) == "bf16" else None
        self.policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32,
                                           cast_forward_inputs=False)

    @classmethod
    def setup(cls, device_pref: str = "auto", precision: str = "auto") -> "FullyShardedDataParallel":
        return cls(distributed.setup(device_pref), precision)

    def shard(self, model: nn.Module) -> nn.Module:
        """The core as one unit (gathered once per step, kept through the loops and the backward), then the
        root (embeddings, heads, a latent interface's blocks)."""
        fully_shard(model.core, mesh=self.mesh, reshard_after_forward=False, mp_policy=self.policy)
        fully_shard(model, mesh=self.mesh, mp_policy=self.policy)
        return model

    def wrap(self, model: nn.Module, compile: bool = False) -> nn.Module:
        return torch.compile(model) if compile else model  # already sharded by `shard`

    def local(self, value: torch.Tensor) -> torch.Tensor:
        return value.full_tensor() if isinstance(value, DTensor) else value

    def full_state_dict(self, model: nn.Module) -> dict:
        return get_model_state_dict(model, options=GATHER)

    def full_optimizer_state(self, model: nn.Module, opt: torch.optim.Optimizer) -> dict:
        """The gathered optimizer state, keyed by parameter index as `opt.state_dict()` is (DDP's format)."""
        state = get_optimizer_state_dict(model, opt, options=GATHER)
        if not state:  # not the main rank
            return {}
        names = [name for group in state["param_groups"] for name in group["params"]]
        index = {name: i for i, name in enumerate(names)}
        return {"state": {index[name]: v for name, v in state["state"].items()},
                "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]}

    def load_state_dict(self, model: nn.Module, state: dict, source: str) -> None:
        """Checked like a one-process load (DTensor shapes are the global ones), then scattered."""
        load_weights(model, state, source, load=lambda s: set_model_state_dict(model, s, options=SCATTER))

    def load_optimizer_state(self, model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
        """A state saved by either strategy (index-keyed) -> the sharded optimizer."""
        state = in_own_layout(opt, model, state)
        names = {id(p): name for name, p in model.named_parameters()}
        order = [names[id(p)] for group in opt.param_groups for p in group["params"]]
        keyed = {"state": {order[i]: v for i, v in state["state"].items()},
                 "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in state["param_groups"]]}
        set_optimizer_state_dict(model, opt, optim_state_dict=keyed, options=SCATTER)

    def sampling_model(self, model: nn.Module, build) -> nn.Module | None:
        state = self.full_state_dict(model)  # a collective: every rank takes part
        if not self.is_main:
            return None
        plain = build()
        plain.load_state_dict(state)
        return plain.to(self.device).eval()
