"""The training loop: steps until train.steps or train.max_minutes, log rows, checkpoints, sample grids, and a
Ctrl-C / SIGTERM handler that stops between steps with a whole-step checkpoint."""
from __future__ import annotations

import json
import signal
import sys
import threading
import time

from tqdm.auto import tqdm

from ..objectives.ilsd import ilsd_lambda
from . import schedule
from .step import step_gflops


class StopRequest:
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


def step_columns(family, plan) -> dict:
    """The logged step's latent budget J̃ (models with a latent interface; `teacher_latents` too under
    latent_teacher=full) and its analytic forward GFLOPs per sample (families with an analytic count)."""
    if plan is None:
        return {}
    out = {} if plan.latents is None else {"latents": plan.latents}
    if plan.teacher_latents is not None:
        out["teacher_latents"] = plan.teacher_latents
    gflops = step_gflops(family, plan)
    return out if gflops is None else {**out, "fwd_gflops": gflops}


def fit(trainer) -> dict:
    """Train `trainer` from its current step to the end of its schedule -> the run summary (also written to
    RUN_DIR/summary.json). The loss terms are read to the host (averaged over ranks) only at log steps."""
    t, run_dir = trainer.cfg.train, trainer.run_dir
    main = trainer.dist.is_main
    if trainer.step >= t.steps:  # a finished run resumed: nothing to train, nothing to rewrite
        if main:
            tqdm.write(f"elt: note: {run_dir} already finished at step {trainer.step} (train.steps="
                       f"{t.steps}): nothing to do; to train longer raise train.steps and pass --allow-changes",
                       file=sys.stderr)
        path = run_dir / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else {"step": trainer.step, "stop": "steps"}
    stop_reason = "steps"
    bar = tqdm(total=t.steps, initial=trainer.step, disable=not (main and trainer.progress), dynamic_ncols=True,
               desc=f"train {t.mode}")
    stop_request = StopRequest()
    start, start_elapsed, last = time.perf_counter(), trainer.elapsed, {}
    window_t, window_n = time.perf_counter(), 0
    try:
        while trainer.step < t.steps:
            res = trainer.train_step(trainer.step)
            trainer.step += 1
            window_n += t.batch_size
            trainer.elapsed = start_elapsed + time.perf_counter() - start
            if trainer.step % t.log_every == 0 or trainer.step == t.steps:
                now = time.perf_counter()
                last = {"step": trainer.step, **res.logged(trainer.parallel.mean),
                        "student_loops": res.student_loops, "lambda": res.lam,
                        "lr": schedule.learning_rate(trainer.step - 1, trainer.cfg), "grad_norm": res.grad_norm,
                        "img_per_s": window_n / (now - window_t), "elapsed_min": trainer.elapsed / 60, "precision": trainer.precision}
                window_t, window_n = now, 0
                last |= step_columns(trainer.family, res.plan)
                if trainer.log is not None:
                    trainer.log.row(last)
                bar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{last['img_per_s']:.0f}")
            bar.update(1)
            if trainer.step % t.ckpt_every == 0 and trainer.step < t.steps:
                trainer.save()
            if t.sample_every and trainer.step % t.sample_every == 0 and trainer.step < t.steps:
                trainer.sample_grid()
            if t.max_minutes and trainer.elapsed >= 60 * t.max_minutes:
                stop_reason = "max_minutes"
                break
            if stop_request.flag:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        stop_reason = "interrupted"
        if main:
            tqdm.write(f"interrupted at step {trainer.step}: saving a checkpoint before exiting", file=sys.stderr)
    finally:
        bar.close()
        stop_request.restore()
    trainer.save()
    if stop_reason != "interrupted":
        trainer.sample_grid()
    summary = {**last, "logged_step": last.get("step"), "step": trainer.step, "stop": stop_reason,
               "elapsed_min": trainer.elapsed / 60}
    if t.mode == "ilsd":  # the λ of the last step trained: 0 once the curriculum is complete
        summary["lambda_end"] = ilsd_lambda(max(0, trainer.step - 1), t.steps, t.lambda_decay)
        if stop_reason == "max_minutes" and summary["lambda_end"] > 0 and main:
            tqdm.write(f"elt: warning: stopped by train.max_minutes={t.max_minutes:g} at step {trainer.step} of "
                       f"{t.steps}: the ILSD curriculum ended at λ = {summary['lambda_end']:.3f}, not 0, so "
                       f"the student never learned from distillation alone. Raise train.max_minutes, lower "
                       f"train.steps, or set train.lambda_decay <= {trainer.step / t.steps:.2f}", file=sys.stderr)
    if main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if stop_reason == "interrupted":
        raise KeyboardInterrupt
    return summary
