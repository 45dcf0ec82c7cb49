"""A diffusers `AutoencoderKL` from a local folder (no hub): the SD-VAE that maps 256x256 images to 32x32x4 latents.

The folder holds `config.json` and `diffusion_pytorch_model.safetensors` (copied from `stabilityai/sd-vae-ft-mse`
or from Stable Diffusion v1.4's `vae/`; `--vae-subfolder vae` reads a whole pipeline folder). Its config is
checked before the weights are read: an AutoencoderKL with 3 input channels, the latent channels, the
downsampling factor 2**(len(block_out_channels) - 1) and the scaling factor, each with an error that says what
to fix. `sha256` of the weights goes into every latent folder's meta.json. Needs `pip install 'elt[bench]'`
(diffusers).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..hashing import file_sha256
from .dataset import DataError

WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def adm_center_crop(img: Image.Image, size: int) -> np.ndarray:
    """ADM's `center_crop_arr` (guided-diffusion, used by DiT and ELIT): halve with BOX while the short side is
    at least 2·size, BICUBIC-resize the short side to `size`, centre-crop -> uint8 (size, size, 3)."""
    while min(*img.size) >= 2 * size:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    scale = size / min(*img.size)
    img = img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)
    arr = np.array(img.convert("RGB"))  # a writable copy, as ADM's np.array
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top:top + size, left:left + size]


@dataclass(frozen=True)
class VaeInfo:
    """What a latent folder records about the VAE that made it (meta.json "vae")."""

    path: str  # the folder it was loaded from (sampling decodes with it)
    subfolder: str | None
    sha256: str  # of the weights file
    latent_channels: int
    downsample: int  # image side / latent side
    scaling_factor: float
    crop: str  # how images became squares of `size`
    size: int
    flip: bool  # whether horizontally flipped copies were added

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def vae_folder(path: str | Path, subfolder: str | None = None) -> Path:
    folder = Path(path).expanduser() / (subfolder or "")
    if not folder.is_dir():
        raise DataError(f"VAE folder {folder} does not exist: pass --vae DIR holding config.json and "
                        f"{WEIGHTS[0]} (e.g. copied from stabilityai/sd-vae-ft-mse)")
    return folder


def read_vae_config(folder: Path) -> dict:
    """The checked config.json of an AutoencoderKL folder -> the config dict."""
    path = folder / "config.json"
    if not path.is_file():
        raise DataError(f"{path} is missing: a VAE folder holds config.json and {WEIGHTS[0]} (for a whole Stable "
                        f"Diffusion folder pass --vae-subfolder vae)")
    try:
        cfg = json.loads(path.read_text())
    except ValueError as e:
        raise DataError(f"{path} is not valid JSON ({e}): copy the VAE's config.json again") from None
    if not isinstance(cfg, dict) or cfg.get("_class_name") != "AutoencoderKL":
        raise DataError(f"{path} describes a {cfg.get('_class_name') if isinstance(cfg, dict) else None!r}, not an "
                        f"AutoencoderKL: pass the folder of the image VAE (e.g. sd-vae-ft-mse)")
    blocks = cfg.get("block_out_channels")
    checks = [(cfg.get("in_channels", 3) == 3, f"in_channels must be 3 (RGB), got {cfg.get('in_channels')!r}"),
              (isinstance(cfg.get("latent_channels"), int) and cfg["latent_channels"] >= 1,
               f"latent_channels must be an integer >= 1, got {cfg.get('latent_channels')!r}"),
              (isinstance(blocks, list) and len(blocks) >= 1,
               f"block_out_channels must be a non-empty list, got {blocks!r}"),
              (isinstance(cfg.get("scaling_factor"), (int, float)) and math.isfinite(cfg["scaling_factor"])
               and cfg["scaling_factor"] > 0,
               f"scaling_factor must be a number > 0 (0.18215 for the SD VAE), got {cfg.get('scaling_factor')!r}")]
    for ok, message in checks:
        if not ok:
            raise DataError(f"{path}: {message}")
    return cfg


def weights_file(folder: Path) -> Path:
    for name in WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder} has config.json but no weights ({' or '.join(WEIGHTS)}): copy them beside it")


def load_vae(path: str | Path, subfolder: str | None = None, device: str | torch.device = "cpu"):
    """(AutoencoderKL in eval mode on `device`, its config dict, the weights' sha256) from a local folder."""
    folder = vae_folder(path, subfolder)
    cfg = read_vae_config(folder)
    sha = file_sha256(weights_file(folder))
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise DataError("reading an SD-VAE needs diffusers: pip install 'elt[bench]'") from None
    import logging

    logging.getLogger("diffusers").setLevel(logging.ERROR)  # its note that `accelerate` is absent
    vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, low_cpu_mem_usage=False)
    return vae.to(device).eval().requires_grad_(False), cfg, sha


def downsample_of(cfg: dict) -> int:
    return 2 ** (len(cfg["block_out_channels"]) - 1)


class VaeDecoder:
    """Scaled latents (B, C, h, w) -> uint8-ready images in [-1, 1] (B, 3, H, W): vae.decode(z / scale)."""

    def __init__(self, info: dict, device: str | torch.device = "cpu", batch_size: int = 16):
        self.vae, cfg, sha = load_vae(info["path"], info.get("subfolder"), device)
        if sha != info["sha256"]:
            raise DataError(f"the VAE at {info['path']} has other weights (sha256 {sha[:12]}) than the one the "
                            f"latents were made with ({info['sha256'][:12]}): restore that VAE folder")
        self.scale, self.batch_size, self.device = float(info["scaling_factor"]), batch_size, device

    @torch.no_grad()
    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        out = [self.vae.decode(z[i:i + self.batch_size].to(self.device).float() / self.scale).sample.clamp(-1, 1)
               for i in range(0, len(z), self.batch_size)]
        return torch.cat(out)
