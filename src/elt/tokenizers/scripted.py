"""A user's TorchScript tokenizer behind the `VQCodec` interface (same checks as `VQAutoencoder`)."""
from __future__ import annotations

import torch

from ..codecs.vq import VQCodec
from .errors import TokenizerError

SCRIPT_ATTRIBUTES = ("encode", "decode", "codebook_size", "image_shape")


class ScriptedTokenizer(VQCodec):
    """A TorchScript tokenizer behind the VQAutoencoder interface (encode, decode, codebook_size, token_grid,
    image_shape). The scripted module must provide those, with `grid_h`/`grid_w` accepted for token_grid;
    its own `encode` takes float images in [-1, 1], (B, C, H, W), or clips (B, C, T, H, W) with a (t, h, w)
    token_grid (e.g. a MAGVIT-style 3-D VQ: 16x128x128 -> 4x16x16)."""

    def __init__(self, module: torch.jit.ScriptModule, source: str = "TorchScript module"):
        super().__init__()
        missing = [a for a in SCRIPT_ATTRIBUTES if not hasattr(module, a)]
        has_grid = hasattr(module, "token_grid") or (hasattr(module, "grid_h") and hasattr(module, "grid_w"))
        if not has_grid:
            missing.append("token_grid (or grid_h and grid_w)")
        if missing:
            raise TokenizerError(f"{source} does not have the tokenizer interface: it lacks {', '.join(missing)}; "
                                 f"script a module with methods encode(x) -> (B, h, w) tokens and "
                                 f"decode(tokens) -> (B, C, H, W) images in [-1, 1], and attributes codebook_size, "
                                 f"token_grid (h, w) and image_shape (C, H, W)")
        self.module = module
        self.source = source
        try:
            grid = module.token_grid if hasattr(module, "token_grid") else (module.grid_h, module.grid_w)
            self._set_shapes(int(module.codebook_size), tuple(int(v) for v in grid),
                             tuple(int(v) for v in module.image_shape))
        except (TypeError, ValueError) as e:
            raise TokenizerError(f"{source}: codebook_size must be an int, token_grid two ints and image_shape "
                                 f"three ints ({e})") from None
        if (len(self.token_grid), len(self.image_shape)) not in ((2, 3), (3, 4)):
            raise TokenizerError(f"{source}: token_grid must be (h, w) with image_shape (C, H, W), or (t, h, w) with "
                                 f"(C, T, H, W) for clips, got {self.token_grid} and {self.image_shape}")

    @property
    def device(self) -> torch.device:
        for t in list(self.module.parameters()) + list(self.module.buffers()):
            return t.device
        return torch.device("cpu")

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Checked images (B, C, H, W) in [-1, 1] -> the module's tokens, shape-checked, as int64."""
        tokens = self.module.encode(x.float())
        if tuple(tokens.shape) != (x.shape[0], *self.token_grid):
            raise TokenizerError(f"{self.source}.encode returned shape {tuple(tokens.shape)}, expected "
                                 f"{(x.shape[0], *self.token_grid)}")
        return tokens.long()

    def _decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.module.decode(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_unit(x)
