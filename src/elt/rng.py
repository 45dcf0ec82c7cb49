"""Every seeded random stream of the project, as a function of plain integers.

Each draw that must repeat (on every rank, on resume, whatever the batch size) seeds a fresh CPU
`torch.Generator` from one of these formulas. The values are frozen: changing a formula changes every
trained run and every sample.

| stream                  | formula                                   | used by                                  |
|-------------------------|-------------------------------------------|------------------------------------------|
| training step, stream k | (seed·1,000,003 + step)·7 + k             | k=0: noise, t, masks, label dropout of   |
|                         |                                           | batch `step`; k=1: the ILSD student loops |
|                         |                                           | k=2: the latent budget J̃ (latent models) |
| epoch permutation       | seed·100,003 + epoch                      | data order (generator and tokenizer)     |
| per-sample stream k     | (seed·1,000,003 + sample)·1,009 + k       | masked: decoding step k of sample        |
|                         |                                           | `sample`; flow: k=0 its starting noise,  |
|                         |                                           | k=i+1 its noise of DDPM step i           |

Sample `sample` is the sample's index in the whole request (e.g. 0..49,999 of an FID-50k set), so a sample
is the same whatever the batch size, the number of processes or the chunk it is drawn in; k < 1,009 keeps
the streams of consecutive samples apart (at most 1,008 DDPM steps).

Known overlap, kept for bit-identity: with seed 0 the epoch-permutation seeds (0, 1, 2, …) meet the step
seeds (0, 1, 7, 8, 14, …), e.g. epoch 7 and step 1's stream 0; for seeds >= 1 the training streams are
disjoint for any realistic step and epoch count (tests/test_rng.py checks this).
"""
from __future__ import annotations

import torch

STEP_STREAMS = 7  # stream k of a training step is in 0..6; 0 = batch draws, 1 = student loops, 2 = latents


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """Seed of stream `stream` of training step `step`."""
    return (seed * 1_000_003 + step) * STEP_STREAMS + stream


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the data permutation of epoch `epoch`."""
    return seed * 100_003 + epoch


SAMPLE_STREAMS = 1_009  # streams per sample: k in 0..1,008


def sample_seed(seed: int, sample: int, k: int) -> int:
    """Seed of stream `k` of sample number `sample` (masked: decoding step k; flow: 0 = starting noise,
    i + 1 = the fresh noise of DDPM step i)."""
    return (seed * 1_000_003 + sample) * SAMPLE_STREAMS + k


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed` (one of the formulas above)."""
    return torch.Generator().manual_seed(seed)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator that depends only on (seed, step, stream): identical on every rank and on resume."""
    return generator(step_seed(seed, step, stream))
