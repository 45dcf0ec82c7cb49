"""ELIT's elastic latent interface: windows of an N-D token grid, Read (latents ← tokens), Write (tokens ←
latents), and latent positions, for a looped core that runs on G·J latents (G windows, J latents each).

Tail drop follows the ELIT paper (§3.4: "in every Read/Write and latent-core block, we keep only the first J
latents of each group"), not its released code (which computes all latents in Read and writes from all of
them): at `J` only the first J queries of every group are read, looped and written, so a smaller budget costs
less in Read, core and Write alike, and a model at `J` is exactly a model built with J latents per group.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from ..budget import Budget
from .block import Mlp, modulate
from .embed import sincos_at


# ---- windows of a token grid ----------------------------------------------------------------------------------

def window_counts(grid: Sequence[int], window: Sequence[int]) -> tuple[int, ...]:
    """Windows along each axis of `grid` (tokens per axis) for `window` (tokens per axis); ValueError when a
    window does not tile its axis."""
    grid, window = tuple(grid), tuple(window)
    if len(grid) != len(window):
        raise ValueError(f"a {len(grid)}-D token grid {grid} needs a {len(grid)}-D window, got {window}")
    if any(w < 1 or n % w for n, w in zip(grid, window)):
        raise ValueError(f"window {'x'.join(map(str, window))} does not tile the token grid "
                         f"{'x'.join(map(str, grid))}: pick a window that divides every side")
    return tuple(n // w for n, w in zip(grid, window))


def _axes(k: int) -> tuple[str, str, str]:
    """einops names of a k-D grid: raster 'g0 w0 g1 w1 …', windows '(g0 g1 …)', in-window '(w0 w1 …)'."""
    cut = " ".join(f"g{i} w{i}" for i in range(k))
    return cut, "(" + " ".join(f"g{i}" for i in range(k)) + ")", "(" + " ".join(f"w{i}" for i in range(k)) + ")"


def group_tokens(x: torch.Tensor, grid: Sequence[int], window: Sequence[int]) -> torch.Tensor:
    """(B, prod(grid), D) tokens in raster order -> (B, G, w, D): window g (raster order of windows) holds its
    w = prod(window) tokens in raster order. A pure reshape; images (H, W), clips (T, H, W)."""
    counts = window_counts(grid, window)
    cut, groups, inner = _axes(len(grid))
    sizes = {f"g{i}": g for i, g in enumerate(counts)} | {f"w{i}": w for i, w in enumerate(window)}
    return rearrange(x, f"b ({cut}) d -> b {groups} {inner} d", **sizes)


def ungroup_tokens(x: torch.Tensor, grid: Sequence[int], window: Sequence[int]) -> torch.Tensor:
    """The inverse of `group_tokens`: (B, G, w, D) -> (B, prod(grid), D)."""
    counts = window_counts(grid, window)
    cut, groups, inner = _axes(len(grid))
    sizes = {f"g{i}": g for i, g in enumerate(counts)} | {f"w{i}": w for i, w in enumerate(window)}
    return rearrange(x, f"b {groups} {inner} d -> b ({cut}) d", **sizes)


def group_positions(dim: int, grid: Sequence[int], window: Sequence[int]) -> torch.Tensor:
    """(G, dim): the sin-cos code of every window's centre (in token units). Added to all latents of the group,
    it does not depend on J, so it is valid for every prefix of the group's latents; the latent's identity
    inside its group comes from its query."""
    counts = window_counts(grid, window)
    idx = torch.meshgrid(*(torch.arange(g, dtype=torch.float64) for g in counts), indexing="ij")
    centre = torch.stack([i.reshape(-1) * w + (w - 1) / 2 for i, w in zip(idx, window)], dim=1)  # (G, k)
    return sincos_at(dim, centre)


# ---- layers ----------------------------------------------------------------------------------------------------

class CrossAttention(nn.Module):
    """Multi-head attention of queries (B, Q, D) on keys/values (B, K, D): separate q and kv projections,
    per-head QK-RMSNorm (the convention of `SelfAttention`). Query i's output depends on query i alone."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = True):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"model dim {dim} is not divisible by heads {heads}: choose heads that divide dim")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6) if qk_norm else nn.Identity()

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        # q: (B, Q, D), kv: (B, K, D) -> (B, Q, D)
        q = self.q_norm(rearrange(self.q(q), "b q (h d) -> b h q d", h=self.heads))
        k, v = rearrange(self.kv(kv), "b k (two h d) -> two b h k d", two=2, h=self.heads)
        k = self.k_norm(k)
        attn = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, Q, K): windows are short
        return self.proj(rearrange(attn.softmax(dim=-1) @ v, "b h q d -> b q (h d)"))


class LatentRead(nn.Module):
    """Latents read their window: l = queries[:J]; l += g₁·CA(l, mod(LN(s))); l += g₂·MLP(mod(LN(l))).

    The J_max learned queries (N(0, 0.02)) are shared by all groups; the modulation (adaLN-Zero, six chunks
    from the condition) starts at zero, so at initialisation Read outputs the queries unchanged."""

    def __init__(self, dim: int, heads: int, j_max: int, mlp_ratio: float = 1.0, qk_norm: bool = True,
                 mlp_act: str = "gelu_tanh"):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(j_max, dim) * 0.02)  # (J_max, D)
        self.norm_kv = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = CrossAttention(dim, heads, qk_norm)
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, max(1, int(dim * mlp_ratio)), mlp_act)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def modulation(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # c: (B, D) -> six (B, D): shift/scale of the tokens, attention gate, shift/scale/gate of the MLP
        return self.ada(c).chunk(6, dim=-1)

    def forward(self, s: torch.Tensor, mod: tuple[torch.Tensor, ...], latents: int) -> torch.Tensor:
        # s: (B, G, w, D) grouped tokens -> (B, G, J, D) latents, J = `latents`
        B, G, w, D = s.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = mod
        kv = modulate(self.norm_kv(s.reshape(B, G * w, D)), shift1, scale1).reshape(B * G, w, D)
        lat = self.queries[:latents].repeat(B * G, 1, 1)  # (B·G, J, D): the first J queries of every group
        # (a copy, not a view of the parameter: FLOP counting in no_grad mode cannot hook on such a view)
        gate1 = gate1.repeat_interleave(G, dim=0).unsqueeze(1)  # (B·G, 1, D)
        lat = lat + gate1 * self.attn(lat, kv)  # (B·G, J, D)
        lat = lat.reshape(B, G * latents, D)
        lat = torch.addcmul(lat, gate2.unsqueeze(1), self.mlp(modulate(self.norm_mlp(lat), shift2, scale2)))
        return lat.reshape(B, G, latents, D)


class LatentWrite(nn.Module):
    """Tokens write back from their group's latents: s += CA(LN(s), LN(l)); s += MLP(LN(s)).

    Pre-norm, no modulation (as ELIT's Write); the attention and MLP output projections start at zero, so at
    initialisation Write is the identity on the tokens."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 1.0, qk_norm: bool = True,
                 mlp_act: str = "gelu_tanh"):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm_kv = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = CrossAttention(dim, heads, qk_norm)
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, max(1, int(dim * mlp_ratio)), mlp_act)
        for lin in (self.attn.proj, self.mlp.fc2):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, s: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
        # s: (B, G, w, D) grouped tokens, lat: (B, G, J, D) -> (B, G, w, D)
        B, G, w, D = s.shape
        J = lat.shape[2]
        s = s.reshape(B * G, w, D)
        s = s + self.attn(self.norm_q(s), self.norm_kv(lat.reshape(B * G, J, D)))
        s = s + self.mlp(self.norm_mlp(s))
        return s.reshape(B, G, w, D)


class LatentInterface(nn.Module):
    """Read, Write and the group positions of a token grid cut into windows; J_max latents per group.

    `read(h, c, J)` takes the tokens (B, N, D) to (B, G·J, D) latents (the looped core's input), `write(h, l)`
    puts (B, G·J, D) latents back into the tokens (B, N, D). `check_latents(J)` gives the latents per group
    of a call (None: J_max)."""

    def __init__(self, dim: int, heads: int, grid: Sequence[int], window: Sequence[int], j_max: int,
                 mlp_ratio: float = 1.0, qk_norm: bool = True, mlp_act: str = "gelu_tanh"):
        super().__init__()
        self.grid, self.window = tuple(grid), tuple(window)
        self.groups = math.prod(window_counts(self.grid, self.window))
        self.j_max = j_max
        self.read_layer = LatentRead(dim, heads, j_max, mlp_ratio, qk_norm, mlp_act)
        self.write_layer = LatentWrite(dim, heads, mlp_ratio, qk_norm, mlp_act)
        self.register_buffer("group_pos", group_positions(dim, self.grid, self.window), persistent=False)  # (G, D)

    def check_latents(self, latents: int | None) -> int:
        """Latents per group of a call: None -> J_max; otherwise 1..J_max (BudgetError / ValueError)."""
        if latents is None:
            return self.j_max
        Budget(1, latents)  # the one latent-count check (an integer >= 1)
        if latents > self.j_max:
            raise ValueError(f"latents={latents} exceeds the model's {self.j_max} latents per group: pass "
                             f"1..{self.j_max}")
        return latents

    def read(self, h: torch.Tensor, c: torch.Tensor, latents: int) -> torch.Tensor:
        # h: (B, N, D) tokens, c: (B, D) condition -> (B, G·J, D) latents with their group positions
        lat = self.read_layer(group_tokens(h, self.grid, self.window), self.read_layer.modulation(c), latents)
        lat = lat + self.group_pos[None, :, None]  # (B, G, J, D)
        return lat.flatten(1, 2)

    def write(self, h: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
        # h: (B, N, D) tokens, lat: (B, G·J, D) -> (B, N, D)
        B, _, D = lat.shape
        s = self.write_layer(group_tokens(h, self.grid, self.window), lat.reshape(B, self.groups, -1, D))
        return ungroup_tokens(s, self.grid, self.window)
