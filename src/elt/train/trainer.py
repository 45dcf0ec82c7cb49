"""The Trainer: builds the model, EMA, optimizer and data for a config, and trains one step at a time.

Every random draw of step s (data order, noise, t, label dropout, the student's loop count) is a function
of (seed, s) alone, so all ranks agree, a P-process run equals a one-process run with the same global batch,
and a run resumed from a checkpoint continues exactly as if it had never stopped.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..checkpoint import CheckpointError, remove_stale_temporaries
from ..config import Config, ConfigError
from ..data import load_dataset
from ..distributed import DistInfo
from ..ema import EMA
from ..family import build_family
from ..grid import make_grid, save_png
from ..models import build_model
from ..precision import resolve_precision
from . import loop, schedule
from .data import Prefetcher
from .logs import RunLog, check_tensorboard
from .optim import build_optimizer
from .parallel import DataParallel
from .state import RunLock, load_resumable, note_resume, save_state
from .step import StepResult, autocast, check_step, clip_gradients, compute_loss, plan_step, weight_norm


class Trainer:
    """Owns the model, EMA, optimizer and data; `fit()` trains to `train.steps` or `train.max_minutes`."""

    def __init__(self, cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True,
                 allow_changes: bool = False):
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.parallel = DataParallel.for_config(cfg.train)
        t = cfg.train
        if t.batch_size % self.dist.world:
            raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by the {self.dist.world} "
                              f"processes: choose a multiple of the process count")
        check_tensorboard(t.tensorboard and self.dist.is_main)
        self.data = load_dataset(cfg.data.name, "train", image_size=cfg.data.image_size,
                                 channels=cfg.data.channels, download=True, **cfg.data_options)
        want = cfg.model.input_shape  # (C, H, W), or (C, T, H, W) for clips
        if tuple(self.data.image_shape) != want:
            raise ConfigError(f"data {cfg.data.name!r} gives items of shape {tuple(self.data.image_shape)} but the "
                              f"model expects {want}: set model.channels/model.image_size (and model.frames for "
                              f"clips) to match, or data.image_size/data.channels to resize the data")
        if self.data.num_classes != cfg.model.num_classes:
            raise ConfigError(f"data {cfg.data.name!r} has {self.data.num_classes} classes but "
                              f"model.num_classes={cfg.model.num_classes}: make them equal")
        if resume and not self.run_dir.is_dir():
            raise CheckpointError(f"cannot resume: {self.run_dir} does not exist: pass the --out folder of an "
                                  f"earlier `elt train`")
        created = not self.run_dir.exists()
        self._lock = RunLock(self.run_dir) if self.dist.is_main else None  # one trainer per run folder
        self._prefetch: Prefetcher | None = None
        self.log: RunLog | None = None
        try:
            self._setup(resume, allow_changes)
        except BaseException:
            self.close()
            if created and self.dist.is_main:  # a failed start leaves no folder behind
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    @property
    def dist(self) -> DistInfo:
        """This process's rank, world size and device."""
        return self.parallel.info

    @dist.setter
    def dist(self, info: DistInfo) -> None:
        self.parallel.info = info

    def _setup(self, resume: bool, allow_changes: bool) -> None:
        cfg, t = self.cfg, self.cfg.train
        if self._lock is not None:
            for stale in remove_stale_temporaries(self.run_dir):
                tqdm.write(f"elt: warning: removed {stale}, left by a checkpoint save that was killed",
                           file=sys.stderr)
        self.family = build_family(cfg)
        self.family.prepare(self.data, self.run_dir, self.dist, self.progress)  # masked: tokenizer + token cache
        torch.manual_seed(t.seed)  # initial weights depend on the seed only
        self.model = build_model(cfg).to(self.dist.device)
        self.model.core.checkpoint_blocks = t.checkpoint_activations
        self.ema = EMA(self.model, t.ema_decay, t.ema_warmup)
        self.parallel.shard(self.model)  # FSDP: before the optimizer sees the parameters; EMA sharded alike
        self.parallel.shard(self.ema.model)
        self.opt = build_optimizer(self.model, t)
        self.step, self.elapsed = 0, 0.0
        if resume:
            self._resume(allow_changes)
        self.precision = resolve_precision(t.precision, self.dist.device)  # "auto" -> what this device runs
        self.net = self.parallel.wrap(self.model, compile=t.compile)
        self.log_path = self.run_dir / "log.jsonl"
        if self.dist.is_main:
            self.log = RunLog(self.run_dir, tensorboard=t.tensorboard)

    # ---- one step ----------------------------------------------------------------------------------------
    def _batch(self, step: int) -> dict:
        """This rank's slice of global batch `step`, prepared by the family."""
        t = self.cfg.train
        idx = schedule.batch_indices(step, t.batch_size, len(self.data), t.seed)
        return self.family.batch(step, idx, self.data, self.parallel.rank_slice(t.batch_size), self.model.null_label,
                                 self.dist.device)

    def _next_batch(self, step: int) -> dict:
        """Batch `step`: prefetched on the background thread inside fit(), built here otherwise."""
        return self._prefetch.get(step) if self._prefetch is not None else self._batch(step)

    def train_step(self, step: int) -> StepResult:
        """One optimizer step. Reads the host once (the step guard); the loss terms stay on the device."""
        cfg, t = self.cfg, self.cfg.train
        batch = self._next_batch(step)
        plan = plan_step(t, step, cfg.latent_range, cfg.j_max)
        loss, parts = compute_loss(self.family, self.net, batch, plan, autocast(self.dist.device, self.precision))
        lr = schedule.learning_rate(step, cfg)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        params, local = list(self.model.parameters()), self.parallel.local
        gn = local(clip_gradients(params, t.grad_clip))
        before = local(weight_norm(params))
        self.opt.step()
        health = check_step(step, loss, gn, before, local(weight_norm(params)), lr)  # raises before the EMA
        self.ema.update(self.model, step)
        return StepResult(health.loss, parts, plan.l_int, plan.lam, health.grad_norm, loss.detach(), plan)

    # ---- loop --------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        try:
            self._prefetch = Prefetcher(self._batch_for_prefetch, self.cfg.train.steps)
            return loop.fit(self)
        finally:
            self.close()

    def _batch_for_prefetch(self, step: int) -> dict:
        return self._batch(step)  # looked up per call, so a replaced _batch is used

    def close(self) -> None:
        """Stop the prefetch thread, close the logs and release the run folder (also when collected)."""
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None
        if getattr(self, "log", None) is not None:
            self.log.close()
        if self._lock is not None:
            self._lock.release()

    # ---- checkpoints and samples ---------------------------------------------------------------------------
    def save(self) -> None:
        """A checkpoint of the current step (every rank takes part; the main rank writes)."""
        model_state = self.parallel.full_state_dict(self.model)
        opt_state = self.parallel.full_optimizer_state(self.model, self.opt)
        ema_state = self.parallel.full_state_dict(self.ema.model)
        if self.dist.is_main:
            save_state(self.run_dir, self.cfg, self.step, self.elapsed, model_state, opt_state, ema_state)
        self.parallel.barrier()

    def _resume(self, allow_changes: bool) -> None:
        ckpt, state, ema_state, changed = load_resumable(self.run_dir, self.cfg, allow_changes)
        self.parallel.load_state_dict(self.model, state["model"], str(ckpt))
        self.parallel.load_state_dict(self.ema.model, ema_state, str(ckpt))
        self.parallel.load_optimizer_state(self.model, self.opt, state["optimizer"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        if self.dist.is_main:
            note_resume(self.run_dir, self.step, changed)

    def sample_grid(self, per_class: int = 8, steps: int | None = None) -> Path | None:
        """EMA samples at L_max: one row per class -> RUN_DIR/samples/step_XXXXXXX.png (and TensorBoard)."""
        if not self._pixel_samples():
            return None
        model = self.parallel.sampling_model(self.ema.model, lambda: build_model(self.cfg))  # every rank
        if model is None:  # not the main rank
            return None
        k = self.cfg.model.num_classes
        labels = torch.arange(k).repeat_interleave(per_class)
        sample = self.family.sampler(model, self.run_dir)
        imgs = sample(labels, self.cfg.train_loops, steps or self.cfg.sample.steps, self.cfg.sample.cfg, seed=0,
                      precision=self.precision)
        grid = make_grid(imgs, k, per_class)
        if self.log is not None:
            self.log.image("samples", grid, self.step)
        return save_png(grid, self.run_dir / "samples" / f"step_{self.step:07d}.png", scale=2)


    def _pixel_samples(self) -> bool:
        """Sample grids are drawn for image models on pixel data only: latents would need their decoder (a VAE
        decode per grid is not worth it during training; `elt sample` decodes) and clips have no single-image
        grid."""
        latent = getattr(self.data, "kind", "pixels") in ("latents", "moments")
        return not latent and len(self.cfg.model.input_shape) == 3


def train(cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True,
          allow_changes: bool = False) -> dict:
    """Train `cfg` into `run_dir` (resuming its last checkpoint if asked) -> the run summary."""
    trainer = Trainer(cfg, run_dir, resume=resume, progress=progress, allow_changes=allow_changes)
    try:
        return trainer.fit()
    finally:
        trainer.close()
        trainer.parallel.teardown()
