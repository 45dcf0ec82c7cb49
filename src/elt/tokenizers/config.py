"""Configuration of the VQ tokenizer: architecture and its own training run (the `tokenizer:` section)."""
from __future__ import annotations

from dataclasses import dataclass

from ..precision import check_precision


@dataclass
class TokenizerConfig:
    """A convolutional VQ autoencoder and how to train it. Image shape comes from the data set.

    The defaults are tuned for MNIST 28x28x1 on a 2-core CPU: 7x7 = 49 tokens of 256 codes, about 3.5 minutes
    of training for ~27 dB test PSNR with every code in use.
    """

    path: str = "runs/tokenizers/mnist_vq"  # TOK_DIR: where `elt tokenizer train` writes and `elt train` reads
    base_channels: int = 16  # width of the first conv stage (doubled at each downsampling)
    downsample: int = 2  # stride-2 stages: the token grid is image_size / 2**downsample (28 -> 7)
    time_downsample: int = 0  # clips: how many of the first stride-2 stages also halve time (0 for images)
    res_blocks: int = 1  # residual blocks per stage
    codebook_size: int = 256  # V: the generator's vocabulary
    code_dim: int = 16  # dimension of a codebook vector
    commitment: float = 0.25  # β in β·||z - sg(q)||²
    ema_decay: float = 0.99  # codebook EMA decay
    dead_threshold: float = 1.0  # a code whose EMA count falls below this is restarted from an encoder output
    steps: int = 1200
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 100
    seed: int = 0
    precision: str = "fp32"  # "fp32" | "bf16" (autocast) | "auto" (bf16 where the device has bf16 units)
    max_minutes: float = 0.0  # wall-clock budget; 0 = none
    log_every: int = 50

    def validate(self) -> None:
        for key in ("base_channels", "codebook_size", "code_dim", "steps", "batch_size", "log_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"tokenizer.{key} must be >= 1, got {getattr(self, key)}")
        if self.downsample < 0 or self.res_blocks < 0:
            raise ValueError("tokenizer.downsample and tokenizer.res_blocks must be >= 0")
        if not 0 <= self.time_downsample <= self.downsample:
            raise ValueError(f"tokenizer.time_downsample must be in 0..downsample ({self.downsample}), got "
                             f"{self.time_downsample}")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"tokenizer.ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.lr <= 0 or self.commitment < 0:
            raise ValueError("tokenizer.lr must be > 0 and tokenizer.commitment >= 0")
        check_precision("tokenizer.precision", self.precision)
