"""train.checkpoint_activations: each block call is recomputed in the backward pass (the block runs twice per
call), and the gradients are those of the plain forward."""
from __future__ import annotations

import copy

import torch

from elt.models.flow import FlowModelConfig, FlowTransformer
from conftest import randomize_


def _count_calls(block) -> list:
    """Count calls of block.forward (forward hooks do not fire when checkpointing recomputes a module)."""
    calls, forward = [], block.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    block.forward = counted
    return calls


def _grads_and_calls(model, checkpointed: bool) -> tuple[dict, int]:
    model.core.checkpoint_blocks = checkpointed
    calls = _count_calls(model.core.blocks[0])
    g = torch.Generator().manual_seed(3)
    x, t, y = torch.randn(4, 1, 8, 8, generator=g), torch.rand(4, generator=g), torch.tensor([0, 1, 2, 0])
    outs = model(x, t, y, loops=3, exits=[1, 3])
    sum(o.pow(2).mean() for o in outs).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}, len(calls)


def test_checkpointed_blocks_recompute_and_give_the_same_gradients():
    torch.manual_seed(0)
    model = randomize_(FlowTransformer(FlowModelConfig(image_size=8, channels=1, patch=4, dim=32, heads=2,
                                                       blocks=2, mlp_ratio=2.0, num_classes=3)))
    plain, plain_calls = _grads_and_calls(copy.deepcopy(model), False)
    ckpt, ckpt_calls = _grads_and_calls(copy.deepcopy(model), True)
    assert plain_calls == 3 and ckpt_calls == 6  # 3 loops; then once more each in the backward pass
    for name, grad in plain.items():
        torch.testing.assert_close(ckpt[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    with torch.no_grad():  # sampling never recomputes
        model.core.checkpoint_blocks = True
        calls = _count_calls(model.core.blocks[0])
        model(torch.zeros(1, 1, 8, 8), torch.ones(1), torch.tensor([0]), loops=2)
    assert len(calls) == 2
