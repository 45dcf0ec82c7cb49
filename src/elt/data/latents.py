"""`elt data latents ROOT --vae DIR --size 256 --out CACHE`: an image folder -> a code folder of VAE moments.

Every image is ADM-centre-cropped to `size` (data.vae.adm_center_crop), encoded by the VAE, and its posterior
stored as cat(mean, std) over channels, float16, unscaled: (N, 2C, size/f, size/f), e.g. 8x32x32 for the SD-VAE
at 256 (16 KB per image). The flow family then trains on z = (mean + std·ε)·scaling_factor with a fresh ε every
step, and its samples are decoded through the same VAE (its folder, weights hash, scaling factor, crop and
flip are in meta.json). `--flip` adds each image's horizontal mirror as one more item (labels repeated).
The folder is written in a staged temporary folder and renamed into place when complete.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..atomic import staged_dir
from .codes import CODES_FILE, LABELS_FILE, META_FILE, CodeMeta, _check_meta, latent_stats
from .dataset import DataError
from .image_folder import ImageFolderDataset
from .vae import VaeInfo, adm_center_crop, downsample_of, load_vae


def extract_latents(root: str | Path, vae_dir: str | Path, size: int, out: str | Path, subfolder: str | None = None,
                    flip: bool = False, batch_size: int = 32, device: str | torch.device = "cpu",
                    progress: bool = True) -> Path:
    """Encode every image of the ImageNet-layout folder `root` -> the code folder `out` (kind "moments")."""
    if size < 1:
        raise DataError(f"--size must be >= 1, got {size}")
    if batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {batch_size}")
    images = ImageFolderDataset(root, image_size=size, channels=3)  # lists and checks the files only
    vae, cfg, sha = load_vae(vae_dir, subfolder, device)
    f = downsample_of(cfg)
    if size % f:
        raise DataError(f"--size {size} is not a multiple of the VAE's downsampling factor {f}: use e.g. "
                        f"{max(f, size // f * f)}")
    c, side = int(cfg["latent_channels"]), size // f
    n = len(images) * (2 if flip else 1)
    info = VaeInfo(str(Path(vae_dir).expanduser().resolve()), subfolder, sha, c, f, float(cfg["scaling_factor"]),
                   "adm-center-crop", size, flip)
    with staged_dir(out) as tmp:
        codes = np.lib.format.open_memmap(tmp / CODES_FILE, mode="w+", dtype=np.float16, shape=(n, 2 * c, side, side))
        labels = images.labels.numpy().astype(np.int64)
        with tqdm(total=len(images), unit="img", desc="encode", disable=not progress) as bar:
            for start in range(0, len(images), batch_size):
                stop = min(start + batch_size, len(images))
                batch = np.stack([_load(images.files[i], size) for i in range(start, stop)])  # (b, S, S, 3)
                x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)
                codes[start:stop] = _moments(vae, x)
                if flip:
                    codes[len(images) + start:len(images) + stop] = _moments(vae, x.flip(3))
                bar.update(stop - start)
        codes.flush()
        all_labels = np.concatenate([labels, labels]) if flip else labels
        np.save(tmp / LABELS_FILE, all_labels)
        meta = CodeMeta("moments", tuple(codes.shape), "float16", f"image folder {Path(root).expanduser()} "
                        f"({len(images)} images)", f"AutoencoderKL {sha[:12]}", tuple(images.class_names),
                        None, latent_stats(codes), info.to_dict())
        _check_meta(meta, tmp / META_FILE)
        (tmp / META_FILE).write_text(meta.to_json())
        del codes
    return Path(out)


def _load(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return adm_center_crop(img.convert("RGB"), size)
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e}") from e


@torch.no_grad()
def _moments(vae, x: torch.Tensor) -> np.ndarray:
    """(b, 3, S, S) in [-1, 1] -> float16 cat(mean, std) (b, 2C, S/f, S/f)."""
    posterior = vae.encode(x).latent_dist
    return torch.cat([posterior.mean, posterior.std], 1).cpu().numpy().astype(np.float16)
