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
                        latents: int | list[int] | None, uncond_latents: int | None, steps: int | None = None
                        ) -> tuple:
    """(loops, uncond) as Budgets with `--latents` (latents per group, 1..J_max of the loaded model: one for
    every step, or one per step) and `--uncond-latents`; unchanged when neither flag is given. A per-step
    budget (loops or latents per step) comes back as a list of Budgets, one per step."""
    if latents is None and uncond_latents is None:
        return loops, uncond
    flag = "--latents" if latents is not None else "--uncond-latents"
    path = getattr(model, "latent", None)
    if path is None:
        raise ConfigError(f"this run has no latent interface (model.latent): drop {flag}")
    j_max = path.interface.j_max
    per_step = latents if isinstance(latents, list) else [latents]
    for name, values in (("--latents", per_step), ("--uncond-latents", [uncond_latents])):
        bad = [v for v in values if v is not None and not 1 <= v <= j_max]
        if bad:
            raise ConfigError(f"{name} must be an integer in 1..{j_max} (the model's latents per group), "
                              f"got {bad[0]}")
    if uncond_latents is not None and guidance == 1:
        raise ConfigError(f"--uncond-latents {uncond_latents} sets the latents of guidance's unconditional "
                          f"branch, but guidance is off (cfg 1): pass --cfg with a scale other than 1, or drop "
                          f"--uncond-latents")
    if isinstance(latents, list) or isinstance(loops, list):
        n = len(latents) if isinstance(latents, list) else len(loops)
        if steps is not None and n != steps:
            raise ConfigError(f"--latents with one count per step needs {steps} values (the sampling steps), "
                              f"got {n}: pass --steps {n} or a single latent count")
        for name, value in (("--latents", latents), ("--loops", loops)):
            if isinstance(value, list) and len(value) != n:
                raise ConfigError(f"--loops and --latents per step need the same number of values, got "
                                  f"{len(loops) if isinstance(loops, list) else 1} and {len(latents)}")
        ls = loops if isinstance(loops, list) else [loops] * n
        js = latents if isinstance(latents, list) else [latents] * n
        cond = [Budget(L, J) for L, J in zip(ls, js)]
        if uncond is None and uncond_latents is None:
            return cond, None
        if uncond is None:
            raise ConfigError("--uncond-latents with a per-step budget needs a fixed --uncond-loops LW for the "
                              "guiding branch")
        return cond, Budget(uncond, uncond_latents)
    cond = Budget(loops, latents)
    if uncond is None and uncond_latents is None:
        return cond, None
    return cond, Budget(loops if uncond is None else uncond, uncond_latents if uncond_latents is not None
                        else latents)


GUIDANCE_CHOICES = ("cfg", "ccfg", "autoguidance")


def check_guidance_kind(kind: str | None, guidance: float, cond, uncond) -> tuple[str, str]:
    """The guidance variant of a request whose branches run at `cond` and `uncond` (None: as `cond`; `cond`
    None: a sweep, where any given `uncond` differs from some point) ->
    (the guiding branch's label for the sampler: "cfg" or "autoguidance", the variant's name for records:
    "none", "cfg", "ccfg" or "autoguidance").

    `kind`: "cfg" (default: the null label, at the guiding budget if one is given, which is ELIT's CCFG),
    "ccfg" (the same, and a different guiding budget is required) or "autoguidance" (the guiding branch keeps
    the label and runs at its own, smaller budget)."""
    kind = "cfg" if kind is None else kind
    if kind not in GUIDANCE_CHOICES:
        raise ConfigError(f"--guidance must be one of {', '.join(GUIDANCE_CHOICES)}, got {kind!r}")
    same = uncond is None or (isinstance(cond, (int, Budget)) and Budget.of(uncond) == Budget.of(cond))
    if kind != "cfg":
        if guidance == 1:
            raise ConfigError(f"--guidance {kind} mixes in a guiding branch, but guidance is off (cfg 1): pass "
                              f"--cfg with a scale other than 1")
        if same:
            what = ("runs the unconditional branch at a smaller budget" if kind == "ccfg" else
                    "guides the model with a smaller budget of itself (same label; at the same budget it "
                    "would guide nothing)")
            raise ConfigError(f"--guidance {kind} {what}: give that budget with --uncond-loops LW and/or "
                              f"--uncond-latents JW, smaller than --loops / --latents")
    if guidance == 1:
        return "cfg", "none"
    if kind == "autoguidance":
        return "autoguidance", "autoguidance"
    return "cfg", "cfg" if same else "ccfg"


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


def class_labels(labels: list[int] | None, per_class: int, num_classes: int, n: int | None = None) -> torch.Tensor:
    """The labels to sample (N,) int64: the given ones; `n` balanced ones (sample i has label i mod K, so
    every class gets n/K samples, ±1, and every chunk of the set mixes classes); or `per_class` of every class
    in class order."""
    if n is not None:
        if n < 1:
            raise ConfigError(f"--num-samples must be >= 1 (the number of samples), got {n}")
        return torch.arange(n) % num_classes
    if labels:
        bad = [y for y in labels if not 0 <= y < num_classes]
        if bad:
            raise ConfigError(f"--labels {bad} outside 0..{num_classes - 1}")
        return torch.tensor(labels, dtype=torch.long)
    if per_class < 1:
        raise ConfigError(f"--per-class must be >= 1, got {per_class}")
    return torch.arange(num_classes).repeat_interleave(per_class)
