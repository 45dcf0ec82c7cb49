"""Train a VQ tokenizer on a data set's train split and write a TOK_DIR.

Deterministic from `seed`: the initial weights, the batch order (a function of (seed, step)) and the
codebook restarts (torch's global RNG, seeded once) repeat exactly on the same machine and thread count.
The TOK_DIR is assembled in a temporary folder beside `out_dir` (log.jsonl grows there during training)
and renamed into place at the end, so an interrupted run leaves no folder that loads.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..atomic import staged_dir
from ..codecs.pixel import to_uint8, to_unit
from ..codecs.psnr import psnr as image_psnr
from ..data import DataError, load_dataset
from ..device import resolve_device as _resolve_device
from ..grid import make_grid, save_png
from ..precision import autocast
from ..train.schedule import batch_indices, warmup_cosine
from .autoencoder import VQAutoencoder
from .config import TokenizerConfig
from .errors import TokenizerError
from .evaluate import evaluate_tokenizer
from .pretrained import write_model_files

MIN_LR_RATIO = 0.1  # cosine decay to lr·MIN_LR_RATIO at the last step
GRAD_CLIP = 1.0
BETAS = (0.9, 0.99)


def learning_rate(step: int, tcfg: TokenizerConfig) -> float:
    """Linear warm-up, then cosine decay to lr·MIN_LR_RATIO at `steps`."""
    return warmup_cosine(step, tcfg.lr, tcfg.warmup_steps, tcfg.steps, MIN_LR_RATIO)


def psnr(recon: torch.Tensor, x: torch.Tensor) -> float:
    """Mean per-image PSNR (dB) of [-1, 1] images on the [0, 1] scale."""
    return float(image_psnr(recon, x).mean())


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The tokenizer trainer's device ("auto", "cpu", "cuda" or "cuda:N"); TokenizerError if CUDA is missing."""
    no_cuda = TokenizerError(f"device {device!r} was asked for but CUDA is not available: use 'cpu' or 'auto'")
    return _resolve_device(device, no_cuda)


def save_recon_grid(model: VQAutoencoder, dataset, path: Path, pairs: int = 4, cols: int = 8) -> Path:
    """Rows alternate originals and their reconstructions (images spread evenly over the split) -> PNG; a clip
    is shown as the strip of its frames."""
    clips = len(dataset.image_shape) == 4
    cols = 2 if clips else cols
    n = min(len(dataset), pairs * cols)
    pairs = max(1, n // cols) if n >= cols else 1
    cols = min(cols, n)
    idx = torch.linspace(0, len(dataset) - 1, pairs * cols).round().long()  # split files are often class-sorted
    images, _ = dataset.get_batch(idx)
    recon = to_uint8(model.decode(model.encode_unit(to_unit(images))))  # (n, H, W, C)
    images = images.movedim(1, -1)  # (n, H, W, C), or clips (n, T, H, W, C)
    if clips:  # frames side by side: (n, H, T·W, C)
        images, recon = (x.permute(0, 2, 1, 3, 4).flatten(2, 3) for x in (images, recon))
    rows = torch.stack([images.view(pairs, cols, *images.shape[1:]), recon.view(pairs, cols, *recon.shape[1:])], 1)
    tiles = rows.reshape(-1, *images.shape[1:])  # (2·pairs·cols, H, W, C)
    scale = max(1, 64 // images.shape[-2])  # by the width
    return save_png(make_grid(tiles.numpy(), 2 * pairs, cols), path, scale=scale)


def _eval_split(data_name: str, image_size, channels, train_data, data_options: dict | None = None):
    """The test split, or the train split (recorded as such) for an image folder without one."""
    try:
        return load_dataset(data_name, "test", image_size=image_size, channels=channels,
                            **(data_options or {})), "test"
    except DataError as e:
        if "no `test` sub-folder" not in str(e):
            raise
        return train_data, "train"


TOKENIZER_FILES = ("config.yaml", "model.safetensors", "metrics.json")  # what train_tokenizer writes, at least
RUN_MARKS = ("checkpoints", "latest")  # what a trained run folder holds


def not_a_tokenizer_dir(path: Path) -> str | None:
    """None when `path` may be replaced by a new tokenizer (an earlier tokenizer folder, or an empty folder);
    else what it is instead."""
    if not path.is_dir():
        return "is a file, not a tokenizer folder"
    if any((path.parent / mark).exists() for mark in RUN_MARKS):
        return "is the tokenizer of a trained run (its generator was trained on it)"
    if not any(path.iterdir()):
        return None
    if any((path / mark).exists() for mark in RUN_MARKS):
        return "is a trained run folder (it holds checkpoints/ or latest), not a tokenizer folder"
    missing = [name for name in TOKENIZER_FILES if not (path / name).is_file()]
    if missing:
        return f"is not a tokenizer folder (it lacks {', '.join(missing)})"
    return None


def train_tokenizer(tcfg: TokenizerConfig, data_name: str, out_dir, image_size: int | None = None,
                    channels: int | None = None, progress: bool = True, overwrite: bool = False,
                    device: str | torch.device | None = "auto", data_options: dict | None = None) -> dict:
    """Train on `data_name`'s train split, evaluate on its test split, write out_dir (config.yaml,
    model.safetensors, metrics.json, recon.png, log.jsonl) and return the metrics. `data_options`: the further
    `load_dataset` keywords of the config's data section (`Config.data_options`: clip length, labels, ...)."""
    tcfg.validate()
    out_dir = Path(out_dir)
    if out_dir.exists():
        other = not_a_tokenizer_dir(out_dir)
        if other:  # never offer to replace it: --force only replaces what this function wrote
            raise TokenizerError(f"{out_dir} {other}: choose another output folder "
                                 f"(--out or tokenizer.path); only a folder written by `elt tokenizer train` "
                                 f"may be replaced")
        if not overwrite:
            raise TokenizerError(f"{out_dir} already exists: choose another output folder, or overwrite it "
                                 f"(`elt tokenizer train ... --force`), which invalidates generators trained on it")
    dev = resolve_device(device)
    data = load_dataset(data_name, "train", image_size=image_size, channels=channels, **(data_options or {}))
    torch.manual_seed(tcfg.seed)  # initial weights and codebook restarts
    model = VQAutoencoder(tcfg, data.image_shape).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, betas=BETAS, weight_decay=0.0)
    amp = lambda: autocast(dev, tcfg.precision)  # noqa: E731  (a fresh context per step)
    data_info = {"name": str(data_name), "image_size": image_size, "channels": channels,
                 **({"options": dict(data_options)} if data_options else {})}
    n, K = len(data), tcfg.codebook_size
    with staged_dir(out_dir, overwrite=overwrite) as tmp:
        log_path = tmp / "log.jsonl"
        start, step, stop = time.perf_counter(), 0, "steps"
        window_hits = torch.zeros(K, dtype=torch.bool, device=dev)
        window_restarts, last = 0, {}
        bar = tqdm(total=tcfg.steps, disable=not progress, dynamic_ncols=True, desc="train tokenizer")
        model.train()
        try:
            while step < tcfg.steps:
                images, _ = data.get_batch(batch_indices(step, tcfg.batch_size, n, tcfg.seed))
                x = to_unit(images).to(dev)  # (B, C, H, W)
                with amp():
                    recon, tokens, commit, stats = model(x)
                rec = F.mse_loss(recon.float(), x)
                loss = rec + commit
                if not torch.isfinite(loss):
                    raise TokenizerError(f"the tokenizer loss became {loss.item()} at step {step}: lower "
                                         f"tokenizer.lr or use tokenizer.precision=fp32")
                for group in opt.param_groups:
                    group["lr"] = learning_rate(step, tcfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
                opt.step()
                step += 1
                window_hits[tokens.unique()] = True
                window_restarts += stats["restarts"]
                if step % tcfg.log_every == 0 or step == tcfg.steps:
                    last = {"step": step, "loss": loss.item(), "recon": rec.item(), "commit": commit.item(),
                            "psnr": psnr(recon, x), "perplexity": stats["perplexity"],
                            "codes_used": stats["codes_used"], "restarts": window_restarts,
                            "dead_codes": int(K - window_hits.sum()), "lr": learning_rate(step - 1, tcfg),
                            "elapsed_min": (time.perf_counter() - start) / 60}
                    with open(log_path, "a") as f:
                        f.write(json.dumps(last) + "\n")
                    bar.set_postfix(loss=f"{last['loss']:.4f}", psnr=f"{last['psnr']:.1f}",
                                    ppl=f"{last['perplexity']:.0f}")
                    window_hits.zero_()
                    window_restarts = 0
                bar.update(1)
                if tcfg.max_minutes and time.perf_counter() - start >= 60 * tcfg.max_minutes:
                    stop = "max_minutes"
                    break
        finally:
            bar.close()
        train_minutes = (time.perf_counter() - start) / 60
        model.eval()
        test, split = _eval_split(data_name, image_size, channels, data, data_options)
        metrics = evaluate_tokenizer(model, test, progress=progress)
        metrics.update({"split": split, "data": str(data_name), "image_shape": list(model.image_shape),
                        "token_grid": list(model.token_grid), "steps": step, "stop": stop,
                        "train_minutes": train_minutes, "final_train": last})
        write_model_files(tmp, model.cpu(), tcfg, data_info)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        save_recon_grid(model, test, tmp / "recon.png")
    return metrics
