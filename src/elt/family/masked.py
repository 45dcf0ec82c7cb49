"""The masked family (MaskGIT-style on VQ tokens): masked token grids in, logits over the codebook out.

The tokenizer comes from `tokenizer.path`; `elt train` trains it there first when it is missing, copies it
into RUN_DIR/tokenizer (so a run folder is self-contained) and encodes the data set once into a code folder
(`tokenizers.run_folder`).
"""
from __future__ import annotations

import torch

from ..config import ConfigError
from ..objectives.labels import drop_labels
from ..objectives.masked import MaskedTokens
from ..rng import step_generator
from ..tokenizers.run_folder import check_tokenizer, ensure_run_codes, run_tokenizer

__all__ = ["MaskedFamily", "check_tokenizer", "run_tokenizer"]


class MaskedFamily:
    # default sampling batch: 1,000 samples at L=4, K=12, CFG 2 take 0.70x [0.63-0.80] the time at 128 as at
    # 500 (2-core CPU, bf16, 3 interleaved reps: 1,000 CFG rows x 49 tokens fall out of cache); samples do not
    # depend on it
    SAMPLE_BATCH = 128

    def __init__(self, cfg):
        self.cfg = cfg
        self.process = MaskedTokens(cfg.objective, cfg.model.mask_id)
        self.codes = None  # CodeDataset: the training set's token grids (N, h, w), after prepare()

    # ---- codes --------------------------------------------------------------------------------------------
    def prepare(self, data, run_dir, dist, progress: bool = True) -> None:
        """Make sure the run's tokenizer and the token codes of `data` exist (tokenizers.run_folder); keep them."""
        self.codes = ensure_run_codes(self.cfg, data, run_dir, dist, progress)

    # ---- training ------------------------------------------------------------------------------------------
    def batch(self, step: int, idx: torch.Tensor, data, rank_slice: slice, null_label: int, device) -> dict:
        """This rank's part of global batch `step`: token grids with [MASK] where the mask is set."""
        t = self.cfg.train
        g = step_generator(t.seed, step)
        # (B, T), the whole global batch so every rank draws the same masks
        targets = self.codes.model_inputs(self.codes.get_batch(idx)[0]).flatten(1)
        inputs, mask = self.process.training_inputs(targets, g)
        labels = self.codes.labels[idx[rank_slice]]  # the code folder's labels are the data set's
        labels = drop_labels(labels, t.label_dropout, null_label, g, len(idx), rank_slice)  # (b,)
        share = mask.sum().item() * len(labels) / len(idx)  # this rank's share of the global masked tokens
        return {"inputs": inputs[rank_slice].to(device), "y": labels.to(device), "count": share,
                "targets": targets[rank_slice].to(device), "mask": mask[rank_slice].to(device)}

    def forward(self, net, b: dict, loops: int, exits, latents: int | None = None) -> list[torch.Tensor]:
        budget = {} if latents is None else {"latents": latents}  # plain models are called as before
        return net(b["inputs"], b["y"], loops=loops, exits=exits, **budget)

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
                                 r.batch_size or self.SAMPLE_BATCH, r.progress, r.precision, uncond=r.uncond,
                                 first_index=r.first_index, halt=r.halt, trace=r.trace)
        return Sampler(run)
