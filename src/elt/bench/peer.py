"""The external peer: diffusers' DiTTransformer2DModel built from a config (random weights, nothing downloaded),
shaped like elt's iso-compute baseline: same width, depth N·L, heads, patch, channels and token count."""
from __future__ import annotations

import torch
from torch import nn

INSTALL_HINT = "pip install 'elt[bench]'  (or: pip install 'diffusers>=0.30')"


from ..errors import PeerUnavailable  # noqa: E402  (defined with the project's other errors)


def load_dit_class():
    """diffusers.DiTTransformer2DModel, or PeerUnavailable naming the cause and the install command."""
    try:
        from diffusers import DiTTransformer2DModel
    except ImportError as e:
        raise PeerUnavailable(f"diffusers is not installed ({e}); install it with {INSTALL_HINT}") from None
    except Exception as e:  # installed but broken (e.g. an incompatible torch)
        raise PeerUnavailable(f"diffusers failed to import ({type(e).__name__}: {e}); try {INSTALL_HINT}") from None
    return DiTTransformer2DModel


class DiTPeer(nn.Module):
    """Adapter with elt's call signature: forward(x (B, C, H, W), t (B,) in [0, 1], y (B,)) -> (B, C, H, W)."""

    def __init__(self, dit: nn.Module):
        super().__init__()
        self.dit = dit

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # DiT embeds timesteps on the 0..1000 scale of its DDPM training
        return self.dit(x, timestep=1000.0 * t, class_labels=y, return_dict=False)[0]


def build_peer(model_cfg, layers: int) -> tuple[DiTPeer, list[str]]:
    """A DiT with `layers` blocks at the config's width -> (peer, notes on where it differs from elt's model)."""
    cls = load_dit_class()
    c = model_cfg
    dit = cls(num_attention_heads=c.heads, attention_head_dim=c.dim // c.heads, in_channels=c.channels,
              out_channels=c.channels,  # no learned sigma: same output as elt's velocity head
              num_layers=layers, sample_size=c.image_size, patch_size=c.patch, num_embeds_ada_norm=c.num_classes)
    notes = [
        "peer: out_channels = in_channels (no learned-sigma channels), so its output matches elt's",
        "peer: every block has its own timestep MLP + label table + adaLN (elt: one shared condition "
        "embedding, adaLN per unique block computed once per forward); the output layer embeds (t, y) again",
        "peer: separate Q, K, V projections (elt: one fused QKV matmul); attention via "
        "F.scaled_dot_product_attention (elt on CPU with <= 1024 tokens: explicit softmax(QK^T)V, "
        "see elt.nn.attention)",
        "peer: patch embedding is a strided Conv2d (elt: rearrange + Linear), the same FLOPs",
    ]
    if int(c.dim * c.mlp_ratio) != 4 * c.dim:
        notes.append(f"peer: MLP hidden width is fixed at 4·dim={4 * c.dim} (config mlp_ratio={c.mlp_ratio} gives "
                     f"{int(c.dim * c.mlp_ratio)}): not iso-compute")
    if getattr(c, "mlp_act", "gelu_tanh") != "gelu_tanh":
        notes.append(f"peer: tanh-approximate GELU (config model.mlp_act={c.mlp_act})")
    if c.qk_norm:
        notes.append("peer: no QK-norm (config model.qk_norm=true)")
    if c.pos_embed != "sincos":
        notes.append(f"peer: fixed sin-cos positions (config model.pos_embed={c.pos_embed})")
    return DiTPeer(dit), notes
