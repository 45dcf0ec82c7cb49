"""The compute budget of one network evaluation, validated in one place, and its per-step schedule.

`Budget(loops, latents)` is what a sampler asks of the model at one step: `loops` passes through the looped
core and, for models with a latent interface, `latents` latent tokens (None: the model's only setting).
A `BudgetSchedule` gives one `StepBudget` per sampling step: the conditional budget and, for cheap
guidance, an optional smaller one for the guiding branch, which sees the null label (CFG; ELIT's CCFG when
its budget is smaller) or the same label (autoguidance: the model guided by a cheaper copy of itself).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class BudgetError(ValueError):
    """A loop count, latent count or schedule that cannot be run."""


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BudgetError(f"{name} must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class Budget:
    """Compute of one network evaluation: `loops` ≥ 1 and `latents` ≥ 1 or None (no latent interface)."""

    loops: int
    latents: int | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        _positive_int("loops", self.loops)
        if self.latents is not None:
            _positive_int("latents", self.latents)

    @classmethod
    def of(cls, value: int | Budget) -> Budget:
        """A Budget from a loop count, or the Budget itself."""
        return value if isinstance(value, Budget) else cls(value)

    def model_kwargs(self) -> dict:
        """Keyword arguments of a model call at this budget (latents only when set, so models and peers
        without a latent interface are called exactly as before)."""
        return {"loops": self.loops} if self.latents is None else {"loops": self.loops, "latents": self.latents}


GUIDANCE_KINDS = ("cfg", "autoguidance")  # the guiding branch's label: the null label, or the conditional one


@dataclass(frozen=True)
class StepBudget:
    """One sampling step: the conditional budget and the guiding branch's one (None: the same as `cond`).
    `guide`: "cfg" (the guiding branch sees the null label) or "autoguidance" (it sees the same label)."""

    cond: Budget
    uncond: Budget | None = None
    guide: str = "cfg"

    def __post_init__(self):
        if self.guide not in GUIDANCE_KINDS:
            raise BudgetError(f"guide must be one of {', '.join(GUIDANCE_KINDS)}, got {self.guide!r}")

    @property
    def uncond_budget(self) -> Budget:
        return self.cond if self.uncond is None else self.uncond

    @property
    def shared(self) -> bool:
        """Both branches run at one budget (and can share one batched call)."""
        return self.uncond is None or self.uncond == self.cond


BudgetSpec = int | Budget | Sequence[int | Budget]


@dataclass(frozen=True)
class BudgetSchedule:
    """One StepBudget per sampling step."""

    steps: tuple[StepBudget, ...]

    @classmethod
    def of(cls, spec: BudgetSpec | BudgetSchedule, steps: int, uncond: BudgetSpec | None = None,
           guide: str = "cfg") -> BudgetSchedule:
        """From a loop count / Budget for every step, or a sequence of exactly `steps` of them; `uncond` the
        same for the guiding branch (None: as the conditional one), `guide` its label ("cfg": null,
        "autoguidance": the same). A schedule is checked for length."""
        _positive_int("steps", steps)
        if isinstance(spec, BudgetSchedule):
            if uncond is not None or guide != "cfg":
                raise BudgetError("give the guiding branch's budget and label inside the BudgetSchedule, not "
                                  "beside it")
            if len(spec) != steps:
                raise BudgetError(f"a budget schedule for {steps} steps has {len(spec)} entries")
            return spec
        cond = _per_step("loop", spec, steps)
        unc = [None] * steps if uncond is None else _per_step("unconditional loop", uncond, steps)
        return cls(tuple(StepBudget(c, u, guide) for c, u in zip(cond, unc)))

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def __getitem__(self, i: int) -> StepBudget:
        return self.steps[i]

    @property
    def loops(self) -> list[int]:
        """The conditional loop count of each step."""
        return [s.cond.loops for s in self.steps]

    @property
    def latents(self) -> list[int | None]:
        """The conditional latents per group of each step (None: the model's full budget)."""
        return [s.cond.latents for s in self.steps]


def _per_step(what: str, spec, steps: int) -> list[Budget]:
    if isinstance(spec, (int, Budget)):
        return [Budget.of(spec)] * steps
    try:
        values = list(spec)
    except TypeError:
        raise BudgetError(f"a {what} budget must be an integer, a Budget or one per step, got {spec!r}") from None
    if len(values) != steps:
        raise BudgetError(f"a per-step {what} schedule needs {steps} entries (one per sampling step), "
                          f"got {len(values)}")
    return [Budget.of(v) for v in values]


def refuse_latents(latents) -> None:
    """For models without a latent interface: only latents=None runs (BudgetError otherwise)."""
    if latents is not None:
        raise BudgetError(f"this model has no latent interface, so it runs at a loop budget only: got "
                          f"latents={latents!r}; leave latents unset")
