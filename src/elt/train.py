"""Trainer for both families: ILSD / vanilla / baseline from one code path, DDP-ready, exact resume.

Every random draw of step s (data order, noise, t, label dropout, the student's loop count) is a function
of (seed, s) alone, so all ranks agree, a P-process run equals a one-process run with the same global batch,
and a run resumed from a checkpoint continues exactly as if it had never stopped.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from . import distributed
from .atomic import write_text_atomic
from .checkpoint import (CheckpointError, find_checkpoint, load_config_from, load_ema_weights, load_train_state,
                         load_weights, remove_stale_temporaries, save_checkpoint)
from .config import Config, ConfigError
from .data import load_dataset
from .ema import EMA
from .grid import make_grid, save_png
from .family import build_family
from .models import build_model
from .objectives.ilsd import draw_student_loops, ilsd_lambda, ilsd_loss


from .errors import TrainingError  # noqa: E402  (defined with the project's other errors)


@functools.lru_cache(maxsize=2)
def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Data order of one epoch, a function of (seed, epoch); cached so a step does not redraw it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def batch_indices(step: int, batch: int, n: int, seed: int) -> torch.Tensor:
    """Global batch `step` of an endless stream of per-epoch permutations of range(n) -> (batch,) int64."""
    pos = torch.arange(step * batch, (step + 1) * batch)
    epochs, offs = pos // n, pos % n
    out = torch.empty(batch, dtype=torch.long)
    for e in epochs.unique().tolist():
        perm = _epoch_permutation(n, seed, e)
        sel = epochs == e
        out[sel] = perm[offs[sel]]
    return out


def learning_rate(step: int, cfg) -> float:
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.lr_schedule == "constant":
        return t.lr
    frac = min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


class _StopRequest:
    """Ctrl-C / SIGTERM set a flag that the loop checks between steps, so the checkpoint saved on the way
    out holds a whole step (model, EMA, optimizer and counter agree). A second Ctrl-C stops at once."""

    def __init__(self):
        self.flag = False
        self.old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.flag = True

    def restore(self) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)


@dataclass
class StepResult:
    loss: float
    parts: dict
    student_loops: int | None
    lam: float | None
    grad_norm: float


class Trainer:
    """Owns the model, EMA, optimizer and data; `fit()` trains to `train.steps` or `train.max_minutes`."""

    def __init__(self, cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True,
                 allow_changes: bool = False):
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.dist = distributed.setup(cfg.train.device)
        t = cfg.train
        if t.batch_size % self.dist.world:
            raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by the {self.dist.world} "
                              f"processes: choose a multiple of the process count")
        self.data = load_dataset(cfg.data.name, "train", image_size=cfg.data.image_size,
                                 channels=cfg.data.channels, download=True)
        want = (cfg.model.channels, cfg.model.image_size, cfg.model.image_size)
        if tuple(self.data.image_shape) != want:
            raise ConfigError(f"data {cfg.data.name!r} gives images of shape {tuple(self.data.image_shape)} but the "
                              f"model expects {want}: set model.channels/model.image_size to match, or "
                              f"data.image_size/data.channels to resize the data")
        if self.data.num_classes != cfg.model.num_classes:
            raise ConfigError(f"data {cfg.data.name!r} has {self.data.num_classes} classes but "
                              f"model.num_classes={cfg.model.num_classes}: make them equal")
        if resume and not self.run_dir.is_dir():
            raise CheckpointError(f"cannot resume: {self.run_dir} does not exist: pass the --out folder of an "
                                  f"earlier `elt train`")
        created = not self.run_dir.exists()
        self._lock = RunLock(self.run_dir) if self.dist.is_main else None  # one trainer per run folder
        try:
            self._setup(resume, allow_changes)
        except BaseException:
            self.close()
            if created and self.dist.is_main:  # a failed start leaves no folder behind
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

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
        self.ema = EMA(self.model, t.ema_decay, t.ema_warmup)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
        self.step, self.elapsed = 0, 0.0
        if resume:
            self._resume(allow_changes)
        self.net = self.model
        if self.dist.world > 1:
            self.net = DDP(self.model, device_ids=[self.dist.device.index] if self.dist.device.type == "cuda" else None)
        if t.compile:
            self.net = torch.compile(self.net)
        self.log_path = self.run_dir / "log.jsonl"

    # ---- one step ----------------------------------------------------------------------------------------
    def _batch(self, step: int) -> dict:
        """This rank's slice of global batch `step`, prepared by the family."""
        t, (r, w) = self.cfg.train, (self.dist.rank, self.dist.world)
        idx = batch_indices(step, t.batch_size, len(self.data), t.seed)
        b = t.batch_size // w
        return self.family.batch(step, idx, self.data, slice(r * b, (r + 1) * b), self.model.null_label,
                                 self.dist.device)

    def train_step(self, step: int) -> StepResult:
        cfg, t = self.cfg, self.cfg.train
        batch, fam = self._batch(step), self.family
        L = cfg.train_loops
        l_int = draw_student_loops(t.seed, step, t.min_loops, L) if t.mode == "ilsd" else None
        lam = ilsd_lambda(step, t.steps, t.lambda_decay) if t.mode == "ilsd" else None
        amp = torch.autocast(self.dist.device.type, dtype=torch.bfloat16) if t.precision == "bf16" \
            else contextlib.nullcontext()
        with amp:
            preds = fam.forward(self.net, batch, L, (l_int, L) if l_int else (L,))
        gt = lambda p: fam.gt_loss(p, batch)  # noqa: E731
        if l_int:
            dist = lambda s, te: fam.dist_loss(s, te, batch)  # noqa: E731
            loss, parts = ilsd_loss(preds[0], preds[1], lam, gt, dist)
        else:
            loss = gt(preds[0])
            parts = {"gt_teacher": loss.detach()}
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {loss.item()} at step {step}: lower train.lr, keep train.grad_clip "
                                f"> 0 or try train.precision=fp32; the last good checkpoint is kept")
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip if t.grad_clip > 0 else float("inf"))
        if not torch.isfinite(gn):
            raise TrainingError(f"the gradient became {gn.item()} at step {step} (the weights were not updated): "
                                f"lower train.lr or try train.precision=fp32; the last good checkpoint is kept")
        before = _norm(list(self.model.parameters()))
        self.opt.step()
        self._check_weights(step, before)
        self.ema.update(self.model, step)
        return StepResult(loss.item(), {k: v.item() for k, v in parts.items()}, l_int, lam, float(gn))

    def _check_weights(self, step: int, before: float) -> None:
        """A step that makes the weights non-finite or more than doubles their norm is an explosion, whatever
        the loss says: stop before it can reach a checkpoint (two fused norms per step)."""
        norm = _norm(list(self.model.parameters()))
        if not math.isfinite(norm) or norm > 2 * before + 1.0:
            raise TrainingError(f"step {step} made the weights explode (norm {before:.3g} -> {norm:.3g}): lower "
                                f"train.lr (now {learning_rate(step, self.cfg):.3g}) or keep train.grad_clip > 0; "
                                f"the last good checkpoint is kept")

    # ---- loop --------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> dict:
        t = self.cfg.train
        if self.step >= t.steps:  # a finished run resumed: nothing to train, nothing to rewrite
            if self.dist.is_main:
                tqdm.write(f"elt: note: {self.run_dir} already finished at step {self.step} (train.steps="
                           f"{t.steps}): nothing to do; to train longer raise train.steps and pass --allow-changes",
                           file=sys.stderr)
            path = self.run_dir / "summary.json"
            return json.loads(path.read_text()) if path.is_file() else {"step": self.step, "stop": "steps"}
        main = self.dist.is_main
        stop_reason = "steps"
        bar = tqdm(total=t.steps, initial=self.step, disable=not (main and self.progress), dynamic_ncols=True,
                   desc=f"train {t.mode}")
        stop_request = _StopRequest()
        start, start_elapsed, last = time.perf_counter(), self.elapsed, {}
        window_t, window_n = time.perf_counter(), 0
        try:
            while self.step < t.steps:
                res = self.train_step(self.step)
                self.step += 1
                window_n += t.batch_size
                self.elapsed = start_elapsed + time.perf_counter() - start
                if self.step % t.log_every == 0 or self.step == t.steps:
                    now = time.perf_counter()
                    last = {"step": self.step, "loss": res.loss, **res.parts, "student_loops": res.student_loops,
                            "lambda": res.lam, "lr": learning_rate(self.step - 1, self.cfg),
                            "grad_norm": res.grad_norm, "img_per_s": window_n / (now - window_t),
                            "elapsed_min": self.elapsed / 60}
                    window_t, window_n = now, 0
                    if main:
                        with open(self.log_path, "a") as f:
                            f.write(json.dumps(last) + "\n")
                    bar.set_postfix(loss=f"{res.loss:.4f}", img_s=f"{last['img_per_s']:.0f}")
                bar.update(1)
                if self.step % t.ckpt_every == 0 and self.step < t.steps:
                    self.save()
                if t.sample_every and self.step % t.sample_every == 0 and self.step < t.steps:
                    self.sample_grid()
                if t.max_minutes and self.elapsed >= 60 * t.max_minutes:
                    stop_reason = "max_minutes"
                    break
                if stop_request.flag:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            stop_reason = "interrupted"
            if main:
                tqdm.write(f"interrupted at step {self.step}: saving a checkpoint before exiting", file=sys.stderr)
        finally:
            bar.close()
            stop_request.restore()
        self.save()
        if stop_reason != "interrupted":
            self.sample_grid()
        summary = {**last, "logged_step": last.get("step"), "step": self.step, "stop": stop_reason,
                   "elapsed_min": self.elapsed / 60}
        if t.mode == "ilsd":  # the λ of the last step trained: 0 once the curriculum is complete
            summary["lambda_end"] = ilsd_lambda(max(0, self.step - 1), t.steps, t.lambda_decay)
            if stop_reason == "max_minutes" and summary["lambda_end"] > 0 and main:
                tqdm.write(f"elt: warning: stopped by train.max_minutes={t.max_minutes:g} at step {self.step} of "
                           f"{t.steps}: the ILSD curriculum ended at λ = {summary['lambda_end']:.3f}, not 0, so "
                           f"the student never learned from distillation alone. Raise train.max_minutes, lower "
                           f"train.steps, or set train.lambda_decay <= {self.step / t.steps:.2f}", file=sys.stderr)
        if main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if stop_reason == "interrupted":
            raise KeyboardInterrupt
        return summary

    def close(self) -> None:
        """Release the run folder for another trainer (also done when the object is collected)."""
        if self._lock is not None:
            self._lock.release()

    # ---- checkpoints and samples ---------------------------------------------------------------------------
    def save(self) -> None:
        if self.dist.is_main:
            state = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
                     "elapsed": self.elapsed}
            save_checkpoint(self.run_dir, self.step, self.cfg, self.ema.model.state_dict(), state,
                            keep=self.cfg.train.keep_checkpoints)
        distributed.barrier()

    def _resume(self, allow_changes: bool) -> None:
        try:
            ckpt = find_checkpoint(self.run_dir, need_state=True)
        except CheckpointError as e:
            raise CheckpointError(f"cannot resume: {e}") from None
        saved = load_config_from(ckpt)
        same = (saved.model, saved.objective, saved.train.mode, saved.train.loops, saved.train.seed) == \
            (self.cfg.model, self.cfg.objective, self.cfg.train.mode, self.cfg.train.loops, self.cfg.train.seed)
        if not same:
            raise CheckpointError(f"cannot resume {ckpt}: it was trained with another architecture, objective, "
                                  f"mode, loop count or seed; "
                                  f"resume with the config saved in {ckpt / 'config.yaml'} or use a new --out folder")
        changed = config_changes(saved, self.cfg)
        if changed and not allow_changes:
            listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise CheckpointError(f"cannot resume {ckpt} exactly: the config differs ({listed}); resume with the "
                                  f"saved config, or pass --allow-changes to continue with the new values")
        state = load_train_state(ckpt)
        load_weights(self.model, state["model"], str(ckpt))
        load_weights(self.ema.model, load_ema_weights(ckpt), str(ckpt))
        self.opt.load_state_dict(state["optimizer"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        if self.dist.is_main:
            _truncate_log(self.run_dir / "log.jsonl", self.step)  # rows after the checkpoint are trained again
            if changed:
                with open(self.run_dir / "log.jsonl", "a") as f:
                    f.write(json.dumps({"event": "resume_with_changes", "step": self.step,
                                        "changed": {k: list(v) for k, v in changed.items()}}) + "\n")
                tqdm.write(f"elt: warning: resuming at step {self.step} with changed settings: "
                           + ", ".join(changed), file=sys.stderr)

    def sample_grid(self, per_class: int = 8, steps: int | None = None) -> Path | None:
        """EMA samples at L_max: one row per class -> RUN_DIR/samples/step_XXXXXXX.png."""
        if not self.dist.is_main:
            return None
        k = self.cfg.model.num_classes
        labels = torch.arange(k).repeat_interleave(per_class)
        sample = self.family.sampler(self.ema.model, self.run_dir)
        imgs = sample(labels, self.cfg.train_loops, steps or self.cfg.sample.steps, self.cfg.sample.cfg, seed=0,
                      precision=self.cfg.train.precision)
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        return save_png(make_grid(imgs, k, per_class), path, scale=2)


# settings a resumed run may change without breaking exact continuation (bookkeeping, budget, placement)
FREE_TO_CHANGE = {"train.max_minutes", "train.log_every", "train.ckpt_every", "train.sample_every",
                  "train.keep_checkpoints", "train.device", "train.compile"}


def config_changes(saved: Config, new: Config) -> dict[str, tuple]:
    """{"section.key": (saved, new)} for every setting that differs and would change the continuation.
    The tokenizer section is ignored: a run uses its own copy of the tokenizer."""
    a, b = saved.to_dict(), new.to_dict()
    out = {}
    for section in ("data", "train", "sample"):
        for key in set(a.get(section, {})) | set(b.get(section, {})):
            va, vb = a.get(section, {}).get(key), b.get(section, {}).get(key)
            if va != vb and f"{section}.{key}" not in FREE_TO_CHANGE:
                out[f"{section}.{key}"] = (va, vb)
    return dict(sorted(out.items()))


@torch.no_grad()
def _norm(params: list[torch.Tensor]) -> float:
    """L2 norm of all parameters together (one host sync)."""
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params))))


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows past `step` (written after the checkpoint that a resumed run continues from)."""
    if not path.is_file():
        return
    lines, keep = path.read_text().splitlines(), []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a row cut short by a kill
        if row.get("step", 0) <= step:
            keep.append(line)
    if keep != lines:
        write_text_atomic(path, "".join(line + "\n" for line in keep))


class RunLock:
    """An exclusive lock on RUN_DIR/.lock for the life of a trainer: a second training into the same
    folder stops with a message instead of overwriting the first one's checkpoints."""

    def __init__(self, run_dir: Path):
        import fcntl

        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / ".lock"
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            owner = self.file.read().strip() or "another process"
            self.file.close()
            raise CheckpointError(f"{run_dir} is being trained by {owner}: wait for it to finish, or choose "
                                  f"another --out folder") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()}")
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            self.file.close()  # closing drops the flock


def train(cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True,
          allow_changes: bool = False) -> dict:
    trainer = Trainer(cfg, run_dir, resume=resume, progress=progress, allow_changes=allow_changes)
    try:
        return trainer.fit()
    finally:
        trainer.close()
        distributed.teardown()
