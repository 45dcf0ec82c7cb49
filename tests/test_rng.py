"""The seed formulas of elt.rng: their values are frozen (every trained run and sample depends on them), and the
streams of one training run do not share seeds (the one known exception, seed 0, is documented)."""
from __future__ import annotations

import torch

from elt import rng
from elt.objectives.ilsd import step_generator


def test_formulas_keep_their_values():
    assert rng.step_seed(3, 5, 1) == (3 * 1_000_003 + 5) * 7 + 1
    assert rng.epoch_seed(3, 2) == 3 * 100_003 + 2
    assert rng.sample_seed(3, 6, 2) == (3 * 1_000_003 + 6) * 1_009 + 2
    assert step_generator is rng.step_generator  # the old import path still works
    a = torch.rand(4, generator=rng.step_generator(3, 5, 1))
    assert torch.equal(a, torch.rand(4, generator=torch.Generator().manual_seed((3 * 1_000_003 + 5) * 7 + 1)))


def _training_streams(seed: int, steps: int, epochs: int) -> dict[str, set[int]]:
    return {"step/0": {rng.step_seed(seed, s, 0) for s in range(steps)},
            "step/1": {rng.step_seed(seed, s, 1) for s in range(steps)},
            "epoch": {rng.epoch_seed(seed, e) for e in range(epochs)}}


def _overlaps(streams: dict[str, set[int]]) -> list[str]:
    names = sorted(streams)
    return [f"{a}~{b}" for i, a in enumerate(names) for b in names[i + 1:] if streams[a] & streams[b]]


def test_training_streams_are_disjoint_for_seeds_above_zero():
    for seed in (1, 2, 3, 1234, 2**31 - 1):
        assert _overlaps(_training_streams(seed, steps=200_000, epochs=20_000)) == [], seed


def test_seed_zero_overlap_is_the_documented_one():
    assert _overlaps(_training_streams(0, steps=1_000, epochs=100)) == ["epoch~step/0", "epoch~step/1"]
    assert rng.epoch_seed(0, 7) == rng.step_seed(0, 1, 0)  # the example in the module docstring


def test_sample_streams_are_unique_per_sample_and_step():
    """Masked decoding steps and the flow sampler's starting noise (k = 0) and DDPM steps (k = i + 1), up to
    the 1,008 steps allowed: no two (sample, k) share a seed, also across consecutive samples."""
    seen = {rng.sample_seed(s, i, k) for s in range(3) for i in range(200) for k in range(64)}
    assert len(seen) == 3 * 200 * 64
    ddpm = {rng.sample_seed(5, i, k) for i in range(50) for k in range(rng.SAMPLE_STREAMS)}
    assert len(ddpm) == 50 * rng.SAMPLE_STREAMS
