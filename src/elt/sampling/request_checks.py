"""Checks of a sampling request (seed, loops, steps, guidance, labels), done before anything is sampled.

Messages name the command-line flag at fault (`--loops`, `--cfg` ...), which is also the keyword of the Python
entry points that take the same settings (`elt.anytime_run.AnytimeOptions`)."""
from __future__ import annotations

import torch

from ..budget import Budget, BudgetError, BudgetSchedule
from ..config import check_guidance
from ..errors import ConfigError

SEED_MAX = 2**32 - 1  # sampling seeds seed a torch.Generator: any unsigned 32-bit value


def at_least_1(flag: str, value: int) -> int:
    if value < 1:
        raise ConfigError(f"{flag} must be >= 1, got {value}")
    return value


def check_seed(value: int) -> int:
    if not 0 <= value <= SEED_MAX:
        raise ConfigError(f"--seed must be an integer in 0..{SEED_MAX}, got {value}")
    return value


def check_loops(loops: int | list[int], steps: int) -> int | list[int]:
    """One loop count for every step, or one per step (exactly `steps` of them), each >= 1. The counts are
    checked by BudgetSchedule, the one loop-count check of the library; errors name the flag."""
    if not isinstance(loops, int) and len(loops) != steps:
        raise ConfigError(f"--loops with one loop count per step needs {steps} values (the sampling steps), "
                          f"got {len(loops)}: pass --steps {len(loops)} or a single loop count")
    try:
        BudgetSchedule.of(loops, steps)
    except BudgetError as e:
        raise ConfigError(f"--{e}") from None  # "--loops must be an integer >= 1, got 0"
    return loops


def check_uncond_loops(uncond: int | str | None, guidance: float) -> int | None:
    """The unconditional branch's loop count (an int, or the flag's text; None: as the conditional one); it
    exists only with guidance."""
    if uncond is None:
        return None
    try:
        uncond = int(uncond) if isinstance(uncond, str) and uncond.strip().lstrip("+-").isdigit() else uncond
        BudgetSchedule.of(1, 1, uncond)
    except BudgetError:
        raise ConfigError(f"--uncond-loops must be an integer loop count >= 1, got {uncond!r}") from None
    if guidance == 1:
        raise ConfigError(f"--uncond-loops {uncond} sets the loop count of guidance's unconditional branch, but "
                          f"guidance is off (cfg 1): pass --cfg with a scale other than 1, or drop --uncond-loops")
    return uncond


def check_latent_budget(model, loops: int | list[int], uncond: int | None, guidance: float,
                        latents: int | None, uncond_latents: int | None) -> tuple:
    """(loops, uncond) as Budgets with `--latents` / `--uncond-latents` (latents per group, 1..J_max of the
    loaded model); unchanged when neither flag is given."""
    if latents is None and uncond_latents is None:
        return loops, uncond
    flag = "--latents" if latents is not None else "--uncond-latents"
    path = getattr(model, "latent", None)
    if path is None:
        raise ConfigError(f"this run has no latent interface (model.latent): drop {flag}")
    if not isinstance(loops, int):
        raise ConfigError(f"{flag} needs a single --loops count, not one per step: pass --loops L")
    j_max = path.interface.j_max
    for name, value in (("--latents", latents), ("--uncond-latents", uncond_latents)):
        if value is not None and not 1 <= value <= j_max:
            raise ConfigError(f"{name} must be an integer in 1..{j_max} (the model's latents per group), "
                              f"got {value}")
    if uncond_latents is not None and guidance == 1:
        raise ConfigError(f"--uncond-latents {uncond_latents} sets the latents of guidance's unconditional "
                          f"branch, but guidance is off (cfg 1): pass --cfg with a scale other than 1, or drop "
                          f"--uncond-latents")
    cond = Budget(loops, latents)
    if uncond is None and uncond_latents is None:
        return cond, None
    return cond, Budget(loops if uncond is None else uncond, uncond_latents if uncond_latents is not None
                        else latents)


def sampling_settings(cfg, steps: int | None = None, guidance: float | None = None) -> tuple[int, float]:
    """(steps, cfg scale): the given values, falling back to the run's `sample` config section."""
    steps = at_least_1("--steps", cfg.sample.steps if steps is None else steps)
    given = guidance is not None
    guidance = guidance if given else cfg.sample.cfg
    check_guidance("--cfg" if given else "the run's sample.cfg", guidance)  # NaN/huge: black images
    if guidance != 1 and cfg.train.label_dropout == 0:
        raise ConfigError(f"--cfg {guidance:g} needs an unconditional model, but this run was trained with "
                          f"train.label_dropout=0 (no null label): sample with --cfg 1")
    return steps, guidance


def class_labels(labels: list[int] | None, per_class: int, num_classes: int) -> torch.Tensor:
    """The labels to sample (N,) int64: the given ones, or `per_class` of every class in class order."""
    if labels:
        bad = [y for y in labels if not 0 <= y < num_classes]
        if bad:
            raise ConfigError(f"--labels {bad} outside 0..{num_classes - 1}")
        return torch.tensor(labels, dtype=torch.long)
    if per_class < 1:
        raise ConfigError(f"--per-class must be >= 1, got {per_class}")
    return torch.arange(num_classes).repeat_interleave(per_class)
