"""Run by tests/test_fsdp.py under torchrun (2 CPU ranks, gloo): FSDP2 on a looped model, against one process.

For each loop count L in argv[2:] it trains one step of a tiny flow model (exits (1, L), a loss on every exit)
sharded the way `train.parallel: fsdp` shards it, counts FSDP's all-gathers and reduce-scatters during that
step, gathers the full gradients, and on rank 0 compares them with one process computing the same loss on the
whole batch. Rank 0 writes {L: {"all_gathers", "reduce_scatters", "max_grad_diff", "grad_norm"}} to argv[1]."""
from __future__ import annotations

import copy
import json
import sys

import torch
import torch.distributed as dist

from elt.distributed import DistInfo
from elt.models.flow import FlowModelConfig, FlowTransformer
from elt.train.sharded import FullyShardedDataParallel

RESHARD = "--reshard" in sys.argv  # a wrapping the design rejects (the core re-gathered for the backward pass)


def loss_of(model, x, t, y, loops):
    outs = model(x, t, y, loops=loops, exits=sorted({1, loops}))
    return sum(o.float().pow(2).mean() for o in outs) / len(outs)


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {}
    for loops in [int(a) for a in sys.argv[2:] if a.isdigit()]:
        torch.manual_seed(0)
        cfg = FlowModelConfig(image_size=8, channels=1, patch=4, dim=32, heads=2, blocks=2, mlp_ratio=2.0,
                              num_classes=3)
        model = FlowTransformer(cfg)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():  # random weights everywhere (adaLN-Zero would leave most gradients zero)
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        reference = copy.deepcopy(model)
        x, t, y = torch.randn(8, 1, 8, 8, generator=g), torch.rand(8, generator=g), torch.tensor([0, 1, 2] * 2 + [0, 1])
        strategy = FullyShardedDataParallel(DistInfo(rank, world), precision="fp32")
        if RESHARD:
            from torch.distributed.fsdp import fully_shard

            fully_shard(model.core, mesh=strategy.mesh, reshard_after_forward=True)
            fully_shard(model, mesh=strategy.mesh)
        else:
            strategy.shard(model)
        counts = {"all_gathers": 0, "reduce_scatters": 0}
        gather, scatter = dist.all_gather_single, dist.reduce_scatter_single

        def counted(fn, key):
            def wrapper(*args, **kwargs):
                counts[key] += 1
                return fn(*args, **kwargs)
            return wrapper

        dist.all_gather_single = counted(gather, "all_gathers")
        dist.reduce_scatter_single = counted(scatter, "reduce_scatters")
        try:
            rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
            loss_of(model, x[rows], t[rows], y[rows], loops).backward()
        finally:
            dist.all_gather_single, dist.reduce_scatter_single = gather, scatter
        grads = {n: strategy.local(p.grad) for n, p in model.named_parameters()}  # full gradients, every rank
        if rank == 0:
            loss_of(reference, x, t, y, loops).backward()
            diff = max((grads[n] - p.grad).abs().max().item() for n, p in reference.named_parameters())
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in reference.parameters()])).item()
            results[loops] = {**counts, "max_grad_diff": diff, "grad_norm": norm}
    if rank == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f)
    dist.barrier()  # no rank leaves the group while another is still working (gloo can abort the early one)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
