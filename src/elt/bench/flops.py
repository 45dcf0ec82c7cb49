"""FLOPs: an analytic count of the matmuls of a DiT-style transformer, a counted one (FlopCounterMode), and
this machine's matmul peak (a large square matmul) to put achieved FLOP/s in proportion.

Convention: one multiply-add = 2 FLOPs, so an (m×k)·(k×n) matmul is 2·m·n·k. Only matmuls count (linear
layers, attention QKᵀ and AV, the patch convolution); norms, activations and softmax are left out, as
FlopCounterMode does.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


@dataclass(frozen=True)
class Arch:
    """What one forward pass computes, per sample."""

    tokens: int  # T
    dim: int  # D
    mlp_hidden: int  # hidden width of the MLP
    patch_dim: int  # P = prod(patch)·C (values per token)
    block_calls: int  # transformer-block applications (unique blocks × loops)
    ada_evals: int  # adaLN modulations computed, D -> 6D each
    t_mlp_evals: int  # timestep MLPs evaluated (freq_dim -> D -> D)
    final_exits: int = 1  # final layers evaluated (adaLN D -> 2D, then D -> P per token)
    freq_dim: int = 256
    # ELIT's latent interface (groups = 0: none, the core runs on the T tokens)
    groups: int = 0  # G windows of w = T / G tokens
    latents: int = 0  # J latents per group: the core runs on G·J latents
    head_blocks: int = 0  # spatial blocks on T tokens before Read (once)
    tail_blocks: int = 0  # spatial blocks on T tokens after Write (once per exit)
    rw_hidden: int = 0  # hidden width of the Read / Write MLPs


def _block(n: int, D: int, H: int) -> int:
    """One transformer block on n tokens: QKV + output projection, MLP up + down, QKᵀ and AV over heads."""
    return 2 * n * D * 3 * D + 2 * n * D * D + 2 * 2 * n * D * H + 2 * 2 * n * n * D


def analytic_forward_flops(a: Arch) -> int:
    """Matmul FLOPs of one forward pass, per sample."""
    T, D, H, P = a.tokens, a.dim, a.mlp_hidden, a.patch_dim
    total = 2 * T * P * D  # patch embedding
    total += a.t_mlp_evals * (2 * a.freq_dim * D + 2 * D * D)
    total += a.ada_evals * 2 * D * 6 * D
    total += a.final_exits * (2 * D * 2 * D + 2 * T * D * P)
    if not a.groups:
        return total + a.block_calls * _block(T, D, H)
    K, w, R = a.groups * a.latents, T // a.groups, a.rw_hidden  # core tokens, window, Read/Write MLP width
    # cross-attention of q queries on k keys in windows: q and output projections on q, kv projection on k,
    # QKᵀ and AV of every query on its window's keys (G·J·w products each way)
    cross = lambda q, k: 2 * q * D * D * 2 + 2 * k * D * 2 * D + 2 * 2 * K * w * D  # noqa: E731
    read = cross(K, T) + 2 * 2 * K * D * R  # latents read their window, then the MLP on the latents
    write = cross(T, K) + 2 * 2 * T * D * R  # tokens read their group's latents, then the MLP on the tokens
    total += a.head_blocks * _block(T, D, H) + read + a.block_calls * _block(K, D, H)
    return total + a.final_exits * (write + a.tail_blocks * _block(T, D, H))


def flow_arch(model_cfg, blocks: int, loops: int, exits: int = 1, latents: int | None = None) -> Arch:
    """Arch of elt's FlowTransformer: modulations once per unique block, reused by every loop. With a latent
    interface (`model_cfg.latent`), the core runs on G·J latents (`latents` = J; None: J_max) between the
    head and the per-exit Write + tail."""
    c = model_cfg
    arch = Arch(tokens=c.num_tokens, dim=c.dim, mlp_hidden=int(c.dim * c.mlp_ratio), patch_dim=c.patch_dim,
                block_calls=blocks * loops, ada_evals=blocks, t_mlp_evals=1, final_exits=exits)
    lat = getattr(c, "latent", None)
    if lat is None:
        if latents is not None:
            raise ValueError(f"latents={latents} for a model without a latent interface")
        return arch
    from ..nn.latent import window_counts

    groups = math.prod(window_counts(c.token_grid, lat.window_for(c.token_grid)))
    return dataclasses.replace(
        arch, ada_evals=blocks + lat.head_blocks + lat.tail_blocks + 1,  # + Read's modulation (Write has none)
        groups=groups, latents=lat.j_max(c.token_grid) if latents is None else latents,
        head_blocks=lat.head_blocks, tail_blocks=lat.tail_blocks, rw_hidden=max(1, int(c.dim * lat.mlp_ratio)))


def dit_arch(model_cfg, layers: int) -> Arch:
    """Arch of diffusers' DiTTransformer2DModel: every block embeds (t, y) itself (its own timestep MLP and
    adaLN), and the output layer embeds (t, y) once more with block 0's embedder; MLP hidden is 4·D."""
    c = model_cfg
    return Arch(tokens=c.num_tokens, dim=c.dim, mlp_hidden=4 * c.dim, patch_dim=c.patch_dim,
                block_calls=layers, ada_evals=layers, t_mlp_evals=layers + 1, final_exits=1)


def _cpu_sdpa_mapping() -> dict:
    """FlopCounterMode has no formula for PyTorch's fused CPU attention kernel: add one (same as CUDA's)."""
    aten = torch.ops.aten
    out = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        out[aten._scaled_dot_product_flash_attention_for_cpu] = \
            lambda q, k, v, *args, out_shape=None, **kw: sdpa_flop_count(q, k, v)
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        out[aten._scaled_dot_product_flash_attention_for_cpu_backward] = \
            lambda g, q, k, v, *args, out_shape=None, **kw: sdpa_backward_flop_count(g, q, k, v)
    return out


def count_flops(fn: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """Run `fn` once under FlopCounterMode -> (total FLOPs, FLOPs per aten op)."""
    with FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_mapping()) as counter:
        fn()
    per_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5,
                max_n: int = 4096, slow_s: float = 0.25) -> dict:
    """Achieved FLOP/s of an n×n @ n×n matmul (median of `reps`). n=None: the best median over
    n = 1024, 2048, … up to `max_n` (large sizes can fall out of cache and run slower, so the largest size is
    not always the fastest), stopping once one matmul takes over `slow_s` seconds (a dtype the device only
    emulates, e.g. bf16 on a CPU without AVX-512 BF16, would otherwise take minutes at the larger sizes).
    -> {"n", "dtype", "gflops", "times_s", "by_n"}."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def time_one(size: int) -> list[float]:
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(size, size, device=device, generator=g).to(dtype)
        b = torch.randn(size, size, device=device, generator=g).to(dtype)
        a @ b  # warm-up (kernel selection, lazy init)
        times = []
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            a @ b
            sync()
            times.append(time.perf_counter() - t0)
        return times

    sizes = [n] if n is not None else [s for s in (1024, 2048, 3072, 4096, 8192) if s <= max_n]
    by_n = {}
    for size in sizes:
        by_n[size] = time_one(size)
        if statistics.median(by_n[size]) > slow_s:
            break
    gflops = {size: 2 * size ** 3 / statistics.median(t) / 1e9 for size, t in by_n.items()}
    best = max(gflops, key=gflops.get)
    return {"n": best, "dtype": str(dtype).replace("torch.", ""), "gflops": gflops[best], "times_s": by_n[best],
            "by_n": {str(k): v for k, v in gflops.items()}}
