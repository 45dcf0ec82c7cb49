"""Batch prefetch: the background thread builds exactly the batch the training thread would, in order, and
its errors surface in the training thread."""
from __future__ import annotations

import threading

import pytest
import torch

from elt.train import Trainer
from elt.train.data import Prefetcher


def test_prefetcher_builds_the_next_step_in_the_background():
    threads = {}

    def make(step):
        threads[step] = threading.current_thread().name
        return {"step": step}

    p = Prefetcher(make, end=4)
    assert [p.get(s)["step"] for s in range(4)] == [0, 1, 2, 3]
    p.close()
    assert threads[0] == threading.main_thread().name
    assert all(threads[s].startswith("elt-prefetch") for s in (1, 2, 3))
    assert 4 not in threads  # nothing past the end


def test_prefetcher_out_of_order_request_builds_in_place_and_errors_surface():
    def make(step):
        if step == 2:
            raise ValueError("broken image")
        return {"step": step}

    p = Prefetcher(make, end=10)
    assert p.get(5)["step"] == 5 and p.get(0)["step"] == 0  # 6 was prefetched but 0 is asked: built here
    with pytest.raises(ValueError, match="broken image"):
        p.get(1) and p.get(2)
    p.close()


def test_fit_with_prefetch_trains_the_same_batches(make_config, tiny_dataset, tmp_path):
    cfg = make_config("train.steps=5", "train.ckpt_every=100", "train.label_dropout=0.3")
    fitted = Trainer(cfg, tmp_path / "a", progress=False)
    seen = []
    real = fitted._batch
    fitted._batch = lambda s: seen.append(s) or real(s)
    fitted.fit()
    assert sorted(seen) == [0, 1, 2, 3, 4]
    stepped = Trainer(cfg, tmp_path / "b", progress=False)
    for s in range(5):
        stepped.train_step(s)
    for (k, a), b in zip(fitted.model.state_dict().items(), stepped.model.state_dict().values()):
        assert torch.equal(a, b), k
