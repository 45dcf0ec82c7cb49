"""Tokenizer quality on a data split: reconstruction PSNR and codebook usage."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..codecs.pixel import to_unit
from ..codecs.psnr import psnr_db, unit_mse

__all__ = ["check_data_fits", "evaluate_tokenizer", "to_unit", "usage_stats"]


def check_data_fits(tok, dataset) -> None:
    """The data set's images must have the tokenizer's image shape (ValueError otherwise)."""
    if tuple(dataset.image_shape) != tuple(tok.image_shape):
        raise ValueError(f"the data set's images are {tuple(dataset.image_shape)} but the tokenizer reads "
                         f"{tuple(tok.image_shape)}: resize the data (image_size/channels) to match")


def usage_stats(counts: torch.Tensor) -> dict:
    """Codebook usage from per-code counts (K,): perplexity, codes used, dead codes, usage fraction."""
    counts = counts.double()
    p = counts / counts.sum().clamp_min(1)
    used = int((counts > 0).sum())
    return {"perplexity": float(torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum())), "codes_used": used,
            "dead_codes": int(counts.numel()) - used, "usage": used / counts.numel()}


@torch.no_grad()
def evaluate_tokenizer(tok, dataset, batch_size: int = 500, progress: bool = False) -> dict:
    """Encode and decode every image of `dataset`. PSNR (dB) compares images mapped to [0, 1] and is
    averaged per image (an exact reconstruction counts as 100 dB); usage counts tokens over the whole split."""
    check_data_fits(tok, dataset)
    n = len(dataset)
    if n == 0:
        raise ValueError("cannot evaluate a tokenizer on an empty data set")
    counts = torch.zeros(tok.codebook_size, dtype=torch.long)
    psnr_sum, mse_sum = 0.0, 0.0
    for s in tqdm(range(0, n, batch_size), disable=not progress, desc="eval tokenizer", leave=False):
        images, _ = dataset.get_batch(torch.arange(s, min(n, s + batch_size)))
        x = to_unit(images)  # (b, C, H, W)
        tokens = tok.encode_unit(x)  # (b, h, w)
        recon = tok.decode(tokens).float().cpu()
        mse = unit_mse(recon, x)  # (b,) on the [0, 1] scale
        psnr_sum += float(psnr_db(mse).sum())
        mse_sum += float(mse.sum())
        counts += torch.bincount(tokens.reshape(-1).cpu(), minlength=tok.codebook_size)
    out = {"psnr": psnr_sum / n, "mse": mse_sum / n, "images": n, "codebook_size": int(tok.codebook_size)}
    out.update(usage_stats(counts))
    return out
