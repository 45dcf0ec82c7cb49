"""`elt bench`: speed of an ELT model vs its iso-compute baseline and a diffusers DiT peer (interleaved,
median of repetitions, FLOPs, share of the machine's matmul peak, peak memory).

Files: timing (interleaved timer, median/spread), flops (analytic + counted FLOPs, matmul peak), memory (peak
tensor bytes), peer (diffusers DiT), workloads (the models and their steps), report (tables), run (it all).
"""
from .run import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
