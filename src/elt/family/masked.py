"""The masked family (MaskGIT-style on VQ tokens): masked token grids in, logits over the codebook out.

The tokenizer comes from `tokenizer.path`; `elt train` trains it there first when it is missing, copies it
into RUN_DIR/tokenizer (so a run folder is self-contained) and encodes the data set once (cached).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from .. import distributed
from ..config import ConfigError
from ..objectives.ilsd import step_generator
from ..objectives.masked import MaskedTokens


class MaskedFamily:
    # default sampling batch: 1,000 samples at L=4, K=12, CFG 2 take 0.70x [0.63-0.80] the time at 128 as at
    # 500 (2-core CPU, bf16, 3 interleaved reps: 1,000 CFG rows x 49 tokens fall out of cache); samples do not
    # depend on it
    SAMPLE_BATCH = 128

    def __init__(self, cfg):
        self.cfg = cfg
        self.process = MaskedTokens(cfg.objective, cfg.model.mask_id)
        self.tokens = None  # (N, T) int64 token grids of the training set, after prepare()

    # ---- tokenizer and token cache -------------------------------------------------------------------------
    def prepare(self, data, run_dir, dist, progress: bool = True) -> None:
        from ..tokenizers import load_tokenizer, token_grids, train_tokenizer

        cfg, run_dir = self.cfg, Path(run_dir)
        own = run_dir / "tokenizer"
        source = Path(cfg.tokenizer.path)
        if dist.is_main and _loadable(own) is None:
            if _loadable(source) is None:
                print(f"no tokenizer at {source}: training it first (the same as `elt tokenizer train CONFIG "
                      f"--out {source}`)", file=sys.stderr)
                train_tokenizer(cfg.tokenizer, cfg.data.name, source, image_size=cfg.data.image_size,
                                channels=cfg.data.channels, progress=progress)
            # check it before copying: a bad tokenizer.path never lands in the run folder
            check_tokenizer(load_tokenizer(_loadable(source)), cfg.model, tuple(data.image_shape))
            run_dir.mkdir(parents=True, exist_ok=True)
            tmp = run_dir / ".tokenizer.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            if source.is_file():  # a TorchScript tokenizer brought by the user
                tmp.mkdir()
                shutil.copy2(source, tmp / "tokenizer.pt")
            else:
                shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("tokens"))
            tmp.rename(own)
        distributed.barrier()
        tok = load_tokenizer(_loadable(own))
        check_tokenizer(tok, cfg.model, tuple(data.image_shape))
        key = f"{_slug(cfg.data.name)}-train"
        if dist.is_main:  # encode once; the other ranks read the cache
            token_grids(tok, data, own / "tokens", key=key, progress=progress)
        distributed.barrier()
        grids = token_grids(tok, data, own / "tokens", key=key, progress=False)
        self.tokens = grids.flatten(1)  # (N, T)

    # ---- training ------------------------------------------------------------------------------------------
    def batch(self, step: int, idx: torch.Tensor, data, rank_slice: slice, null_label: int, device) -> dict:
        """This rank's part of global batch `step`: token grids with [MASK] where the mask is set."""
        t = self.cfg.train
        g = step_generator(t.seed, step)
        targets = self.tokens[idx]  # (B, T), the whole global batch so every rank draws the same masks
        inputs, mask = self.process.training_inputs(targets, g)
        drop = torch.rand(len(idx), generator=g) < t.label_dropout
        _, labels = data.get_batch(idx[rank_slice])
        labels = torch.where(drop[rank_slice], torch.full_like(labels, null_label), labels)
        share = mask.sum().item() * len(labels) / len(idx)  # this rank's share of the global masked tokens
        return {"inputs": inputs[rank_slice].to(device), "y": labels.to(device), "count": share,
                "targets": targets[rank_slice].to(device), "mask": mask[rank_slice].to(device)}

    def forward(self, net, b: dict, loops: int, exits) -> list[torch.Tensor]:
        return net(b["inputs"], b["y"], loops=loops, exits=exits)

    def gt_loss(self, logits: torch.Tensor, b: dict) -> torch.Tensor:
        return self.process.gt_loss(logits, b["targets"], b["mask"], b["count"])

    def dist_loss(self, student: torch.Tensor, teacher: torch.Tensor, b: dict) -> torch.Tensor:
        return self.process.dist_loss(student, teacher, b["mask"], b["count"])

    # ---- sampling ------------------------------------------------------------------------------------------
    def sampler(self, model, run_dir=None):
        """A Sampler: sampler(SampleRequest) or sampler(labels, loops, steps, guidance, seed, batch_size,
        progress, precision) -> uint8 (N, H, W, C); batch_size None = SAMPLE_BATCH."""
        from ..sampling.masked import DecodeSettings, sample_images
        from ..sampling.request import Sampler

        tokenizer = run_tokenizer(run_dir, self.cfg)
        check_tokenizer(tokenizer, self.cfg.model)
        s, sched = self.cfg.sample, self.cfg.objective.mask_schedule
        device = next(model.parameters()).device
        if hasattr(tokenizer, "to"):
            tokenizer = tokenizer.to(device)

        def run(r):
            settings = DecodeSettings(r.steps, r.guidance, s.temp_bias, s.temp_scale, s.choice_temperature, sched)
            try:
                settings.validate(model.cfg.tokens)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            return sample_images(model, tokenizer, r.labels, r.loops, settings, r.seed,
                                 r.batch_size or self.SAMPLE_BATCH, r.progress, r.precision, uncond=r.uncond)
        return Sampler(run)


def _loadable(path: Path) -> Path | None:
    """What load_tokenizer takes for `path`: a tokenizer folder, a TorchScript file, a folder holding
    tokenizer.pt; None when there is nothing to load."""
    if path.is_file():
        return path
    if (path / "config.yaml").is_file() and (path / "model.safetensors").is_file():
        return path
    if (path / "tokenizer.pt").is_file():
        return path / "tokenizer.pt"
    return None


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")[-60:]


def run_tokenizer(run_dir, cfg):
    """The tokenizer of a trained run: RUN_DIR/tokenizer, else the config's tokenizer.path."""
    from ..tokenizers import load_tokenizer

    candidates = []
    if run_dir is not None:
        run_dir = Path(run_dir)
        if run_dir.parent.name == "checkpoints":  # a checkpoint folder: its run is two levels up
            run_dir = run_dir.parent.parent
        candidates.append(run_dir / "tokenizer")
    candidates.append(Path(cfg.tokenizer.path))
    for i, path in enumerate(candidates):
        found = _loadable(path)
        if found is not None:
            if i > 0:  # the fallback may be another (e.g. retrained) tokenizer: its images would be wrong
                print(f"elt: warning: the run's own tokenizer {candidates[0]} is missing; using tokenizer.path "
                      f"{path} instead, which gives wrong images unless it is the tokenizer the run was trained "
                      f"with (copy that one into {candidates[0]})", file=sys.stderr)
            if found.is_file():  # a TorchScript file: loading it runs code that came with the run
                print(f"elt: note: {found} is a TorchScript tokenizer, a program that runs when loaded: use run "
                      f"folders whose tokenizer you trust", file=sys.stderr)
            return load_tokenizer(found)
    raise ConfigError(f"no tokenizer found for this masked run (looked in {', '.join(map(str, candidates))}): "
                      f"copy its tokenizer folder into RUN_DIR/tokenizer or set tokenizer.path")


def check_tokenizer(tok, model_cfg, image_shape: tuple | None = None) -> None:
    """The tokenizer must produce the vocabulary, grid and image shape the generator was built for."""
    if tok.codebook_size != model_cfg.codebook_size:
        raise ConfigError(f"the tokenizer has {tok.codebook_size} codes but model.codebook_size="
                          f"{model_cfg.codebook_size}: set model.codebook_size (and tokenizer.codebook_size) to match")
    if tuple(tok.token_grid) != (model_cfg.grid, model_cfg.grid):
        raise ConfigError(f"the tokenizer makes a {tok.token_grid} token grid but model.grid={model_cfg.grid}: "
                          f"set model.grid to match")
    if image_shape is not None and tuple(tok.image_shape) != tuple(image_shape):
        raise ConfigError(f"the tokenizer reads images of shape {tuple(tok.image_shape)} but the data gives "
                          f"{tuple(image_shape)}: train a tokenizer on this data (elt tokenizer train)")
