"""Batch prefetch: while step s trains, a background thread builds batch s + 1.

Batches are pure functions of the step (data order and every draw come from (seed, step)), so building one
early on another thread gives exactly the batch the training thread would have built; only the decode and
preparation time (e.g. PNG decoding of an image folder) moves off the training thread.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class Prefetcher:
    """get(s) returns make(s), then starts make(s + 1) in the background (up to `end` exclusive)."""

    def __init__(self, make: Callable[[int], dict], end: int):
        self.make, self.end = make, end
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="elt-prefetch")
        self.pending: tuple[int, Future] | None = None

    def get(self, step: int) -> dict:
        if self.pending is not None and self.pending[0] == step:
            batch = self.pending[1].result()  # re-raises an error of the background build here
        else:
            if self.pending is not None:
                self.pending[1].cancel()
            batch = self.make(step)
        self.pending = (step + 1, self.pool.submit(self.make, step + 1)) if step + 1 < self.end else None
        return batch

    def close(self) -> None:
        """Wait for a build in flight (it must not outlive the trainer) and stop the thread."""
        self.pending = None
        self.pool.shutdown(wait=True, cancel_futures=True)
