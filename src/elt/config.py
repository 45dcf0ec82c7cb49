"""Experiment configuration: typed sections loaded from YAML, `key=value` overrides, strict validation."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .models.flow import FlowModelConfig
from .models.masked import MaskedModelConfig
from .models.registry import expand_size
from .objectives.flow import ObjectiveConfig
from .objectives.ilsd import MODES
from .objectives.masked import MaskedObjectiveConfig
from .precision import check_precision
from .schema import build, field_hints, section_choices
from .tokenizers.config import TokenizerConfig

FAMILIES = ("flow", "masked")
LATENT_TEACHERS = ("same", "full")  # train.latent_teacher: the ILSD teacher's latent budget (J̃ or J_max)
MASKED_SAMPLE_KEYS = ("temp_bias", "temp_scale", "choice_temperature")

SEED_MAX = 2**31 - 1  # seeds are mixed with the step as (seed·1000003 + step)·7: this keeps that in int64
GUIDANCE_MAX = 100.0  # classifier-free guidance beyond this saturates every pixel


def check_guidance(name: str, value: float) -> float:
    """A guidance scale must be finite and |w| <= GUIDANCE_MAX (1 = no guidance)."""
    if not math.isfinite(value) or abs(value) > GUIDANCE_MAX:
        raise ConfigError(f"{name} must be a finite guidance scale with |{name}| <= {GUIDANCE_MAX:g} (1 = no "
                          f"guidance; 1.5 to 4 are usual), got {value}")
    return value


@dataclass
class DataConfig:
    name: str = "mnist"  # "mnist", "digits", "moving-digits", or a path: image, video, UCF-101 or code folder
    image_size: int | None = None  # None: the data set's native size
    channels: int | None = None
    label: str | None = None  # moving digits: "digit" (default) | "digit_dir" (40 = digit x direction quadrant)
    frames: int | None = None  # video folders / UCF-101: frames per clip
    frame_stride: int = 1  # video folders / UCF-101: take every frame_stride-th frame
    split_list: int | str | None = None  # UCF-101: 1 (default), 2, 3 or "all"


@dataclass
class TrainConfig:
    mode: str = "ilsd"  # "ilsd" | "vanilla" | "baseline" (N·L unique blocks, run once)
    loops: int = 4  # L_max: loops the teacher runs (the baseline builds blocks·loops unique blocks)
    min_loops: int = 1  # L_min: the student's L_int is drawn from [min_loops, loops)
    lambda_decay: float = 1.0  # λ reaches 0 after this fraction of `steps`
    steps: int = 3000  # length of the schedules (λ, learning rate); training stops here
    max_minutes: float = 0.0  # wall-clock budget; 0 = none. Stops early with a checkpoint
    batch_size: int = 128  # global batch, split evenly over ranks
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decay to lr·min_lr_ratio at `steps`
    lr_schedule: str = "cosine"  # "cosine" | "constant"
    warmup_steps: int = 100
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # 0 disables
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay min(ema_decay, (1+step)/(10+step))
    label_dropout: float = 0.1
    min_latents: int | None = None  # with model.latent: J̃ ~ U{min_latents..max_latents} per step (None: 1); else unset
    max_latents: int | None = None  # with model.latent: the draw's upper end (None: J_max); else unset
    latent_teacher: str = "same"  # ILSD with model.latent: teacher at J̃ ("same", one forward) or J_max ("full")
    precision: str = "auto"  # "auto" (bf16 where the device has bf16 units, else fp32) | "bf16" autocast | "fp32"
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    compile: bool = False
    parallel: str = "ddp"  # "ddp" (replicated weights) | "fsdp" (FSDP2: weights, gradients, optimizer and EMA sharded)
    checkpoint_activations: bool = False  # recompute each block call in the backward pass: less memory, more time
    log_every: int = 25
    sample_every: int = 500  # sample grid every N steps; 0 = only at the end
    ckpt_every: int = 500
    keep_checkpoints: int = 2
    tensorboard: bool = False  # also log to RUN_DIR/tensorboard (needs the tensorboard package)


@dataclass
class SampleConfig:
    """Sampling defaults of `elt sample` / `elt anytime` (the flow family's whole `sample` section)."""

    steps: int = 20  # flow: integration steps; masked: decoding steps K
    cfg: float = 1.0


@dataclass
class MaskedSampleConfig(SampleConfig):
    """The masked family's `sample` section: the shared keys plus MaskGIT's decoding temperatures."""

    temp_bias: float = 0.5  # sampling temperature τ_k = temp_bias + temp_scale·(1 − (k+1)/K)
    temp_scale: float = 0.8
    choice_temperature: float = 4.5  # annealed Gumbel noise on the re-masking confidence


# the sections whose class depends on the family; None: the family takes no such section
FAMILY_SECTIONS: dict[str, dict[str, type | None]] = {
    "flow": {"model": FlowModelConfig, "objective": ObjectiveConfig, "sample": SampleConfig, "tokenizer": None},
    "masked": {"model": MaskedModelConfig, "objective": MaskedObjectiveConfig, "sample": MaskedSampleConfig,
               "tokenizer": TokenizerConfig},
}


@dataclass
class Config:
    family: str = "flow"  # "flow" (DiT-style, pixels) | "masked" (MaskGIT-style, VQ tokens)
    model: FlowModelConfig | MaskedModelConfig = field(default_factory=FlowModelConfig)
    objective: ObjectiveConfig | MaskedObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig | MaskedSampleConfig = field(default_factory=SampleConfig)
    tokenizer: TokenizerConfig | None = None  # masked family only

    # ---- derived -------------------------------------------------------------------------------------
    @property
    def model_blocks(self) -> int:
        """Unique blocks actually built: N, or N·L for the baseline."""
        return self.model.blocks * self.train.loops if self.train.mode == "baseline" else self.model.blocks

    @property
    def train_loops(self) -> int:
        """Loops the trained model runs: L_max, or 1 for the baseline."""
        return 1 if self.train.mode == "baseline" else self.train.loops

    @property
    def makes_clips(self) -> bool:
        """Whether the model generates clips (model.frames set) rather than images."""
        return bool(self.model.frames)

    @property
    def data_options(self) -> dict:
        """The data keys beyond name / size / channels that are set, as `load_dataset` keywords."""
        d = self.data
        opts = {"label": d.label, "frames": d.frames, "split_list": d.split_list,
                "frame_stride": d.frame_stride if d.frame_stride != 1 else None}
        return {k: v for k, v in opts.items() if v is not None}

    @property
    def latent_range(self) -> tuple[int, int] | None:
        """(J_min, J_max) of the per-step latent draw for a model with a latent interface, else None."""
        if self.j_max is None:
            return None
        t = self.train
        return (1 if t.min_latents is None else t.min_latents), (self.j_max if t.max_latents is None
                                                                 else t.max_latents)

    @property
    def j_max(self) -> int | None:
        """The model's latents per group at the full budget, or None without a latent interface."""
        latent = getattr(self.model, "latent", None)
        return None if latent is None else latent.j_max(self.model.token_grid)

    def validate(self) -> "Config":
        t = self.train
        if self.family not in FAMILIES:
            raise ConfigError(f"family must be one of {FAMILIES}, got {self.family!r}")
        want = FAMILY_SECTIONS[self.family]
        wrong = [key for key, cls in want.items() if type(getattr(self, key)) is not (cls or type(None))]
        if wrong:
            needs = ", ".join(f"{key}: {cls.__name__ if cls else 'None'}" for key, cls in want.items())
            raise ConfigError(f"family {self.family!r} needs {needs} (wrong: {', '.join(wrong)}); build configs "
                              f"with load_config/config_from_dict")
        if t.mode not in MODES:
            raise ConfigError(f"train.mode must be one of {MODES}, got {t.mode!r}")
        if t.loops < 1:
            raise ConfigError(f"train.loops must be >= 1, got {t.loops}: it is L_max, the teacher's loop count")
        if t.mode == "ilsd" and not 1 <= t.min_loops < t.loops:
            raise ConfigError(f"ILSD draws the student's loops from [min_loops, loops): need 1 <= train.min_loops "
                              f"< train.loops, got min_loops={t.min_loops}, loops={t.loops}")
        for key in ("steps", "batch_size", "log_every", "ckpt_every", "keep_checkpoints"):
            if getattr(t, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(t, key)}")
        for key in ("warmup_steps", "sample_every", "max_minutes", "weight_decay", "grad_clip", "lambda_decay"):
            value = getattr(t, key)
            if not value >= 0 or value == float("inf"):
                raise ConfigError(f"train.{key} must be a finite number >= 0, got {value}"
                                  + (" (0 disables it)" if key in ("max_minutes", "grad_clip", "sample_every")
                                     else ""))
        if not t.lr > 0 or t.lr == float("inf"):
            raise ConfigError(f"train.lr must be a finite number > 0, got {t.lr}")
        if not 0 <= t.min_lr_ratio <= 1:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1] (the final learning rate is lr·min_lr_ratio),"
                              f" got {t.min_lr_ratio}")
        if not all(0 <= b < 1 for b in t.betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1) (AdamW's β1, β2), got {list(t.betas)}")
        if not 0 <= t.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
        if not 0 <= t.label_dropout < 1:
            raise ConfigError(f"train.label_dropout must be in [0, 1), got {t.label_dropout}")
        check_precision("train.precision", t.precision, ConfigError, "fp16 is not supported")
        if t.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(f"train.lr_schedule must be 'cosine' or 'constant', got {t.lr_schedule!r}")
        d = self.data
        if d.image_size is not None and d.image_size < 1:
            raise ConfigError(f"data.image_size must be >= 1 (or left out for the native size), got {d.image_size}")
        if d.channels not in (None, 1, 3):
            raise ConfigError(f"data.channels must be 1 (grey) or 3 (RGB), got {d.channels}")
        if d.label not in (None, "digit", "digit_dir"):
            raise ConfigError(f"data.label must be 'digit' or 'digit_dir' (moving digits), got {d.label!r}")
        if d.frames is not None and d.frames < 1 or d.frame_stride < 1:
            raise ConfigError(f"data.frames and data.frame_stride must be >= 1, got {d.frames} and {d.frame_stride}")
        if d.split_list is not None and str(d.split_list) not in ("1", "2", "3", "all"):
            raise ConfigError(f"data.split_list must be 1, 2, 3 or all (UCF-101), got {d.split_list!r}")
        if t.parallel not in ("ddp", "fsdp"):
            raise ConfigError(f"train.parallel must be 'ddp' or 'fsdp', got {t.parallel!r}")
        if t.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be 'auto', 'cpu' or 'cuda', got {t.device!r}")
        if self.sample.steps < 1:
            raise ConfigError(f"sample.steps must be >= 1, got {self.sample.steps}")
        check_guidance("sample.cfg", self.sample.cfg)
        if self.sample.cfg != 1 and t.label_dropout == 0:
            raise ConfigError(f"sample.cfg={self.sample.cfg:g} needs an unconditional model, but train.label_dropout=0 "
                              f"never trains the null label: set train.label_dropout (e.g. 0.1) or sample.cfg=1")
        if not 0 <= t.seed <= SEED_MAX:
            raise ConfigError(f"train.seed must be an integer in 0..{SEED_MAX}, got {t.seed}")
        try:
            self.model.validate()
            self.objective.validate()
            if self.family == "masked":
                self.tokenizer.validate()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.family == "masked":
            self._validate_masked()
        self._validate_latents()
        return self

    def _validate_latents(self) -> None:
        t = self.train
        if t.latent_teacher not in LATENT_TEACHERS:
            raise ConfigError(f"train.latent_teacher must be one of {LATENT_TEACHERS} (same: the teacher runs at the "
                              f"step's latent budget; full: at J_max in a second forward), got {t.latent_teacher!r}")
        j_max = self.j_max
        if t.latent_teacher == "full":
            if j_max is None:
                raise ConfigError("train.latent_teacher=full runs the teacher at the full latent budget, but the "
                                  "model has no latent interface: add a model.latent section or set "
                                  "train.latent_teacher=same")
            if t.mode != "ilsd":
                raise ConfigError(f"train.latent_teacher=full needs ILSD's teacher, but train.mode={t.mode} has "
                                  f"none: set train.mode=ilsd or train.latent_teacher=same")
        for key in ("min_latents", "max_latents"):
            j = getattr(t, key)
            if j is None:
                continue
            if j_max is None:
                what = "draws a latent budget per step" if key == "min_latents" else "caps the latent budget drawn " \
                                                                                    "per step"
                raise ConfigError(f"train.{key}={j} {what}, but the model has no latent interface: add a "
                                  f"model.latent section or remove train.{key}")
            if not 1 <= j <= j_max:
                raise ConfigError(f"train.{key} must be in 1..{j_max} (the model's latents per group), got {j}")
        if j_max is not None and t.min_latents is not None and t.max_latents is not None \
                and t.min_latents > t.max_latents:
            raise ConfigError(f"train.min_latents={t.min_latents} exceeds train.max_latents={t.max_latents}: the "
                              f"draw is U{{min_latents..max_latents}}; lower min_latents or raise max_latents")

    def _validate_masked(self) -> None:
        m, tok = self.model, self.tokenizer
        if m.codebook_size != tok.codebook_size:
            raise ConfigError(f"model.codebook_size={m.codebook_size} differs from tokenizer.codebook_size="
                              f"{tok.codebook_size}: the generator's vocabulary is the tokenizer's codebook")
        side, rem = divmod(m.image_size, 2 ** tok.downsample)
        if rem or side != m.grid:
            raise ConfigError(f"model.grid={m.grid} does not match the tokenizer: {m.image_size}px / "
                              f"2**tokenizer.downsample ({2 ** tok.downsample}) = {m.image_size / 2 ** tok.downsample:g}"
                              f" tokens per side; set model.grid (and an image size the downsampling divides)")
        t_side, t_rem = divmod(m.frames, 2 ** tok.time_downsample)
        if m.frames and (t_rem or t_side != m.time_grid):
            raise ConfigError(f"model.time_grid={m.time_grid} does not match the tokenizer: {m.frames} frames / "
                              f"2**tokenizer.time_downsample ({2 ** tok.time_downsample}) = "
                              f"{m.frames / 2 ** tok.time_downsample:g} tokens along time; set model.time_grid (and "
                              f"model.frames divisible by 2**time_downsample)")
        if not m.frames and tok.time_downsample:
            raise ConfigError(f"tokenizer.time_downsample={tok.time_downsample} is for clips, but the model reads "
                              f"images: set model.frames and model.time_grid, or time_downsample to 0")
        s = self.sample
        if not (0 < s.temp_bias < math.inf and 0 <= s.temp_scale < math.inf and 0 <= s.choice_temperature < math.inf):
            raise ConfigError(f"sample.temp_bias must be a finite number > 0, sample.temp_scale and "
                              f"sample.choice_temperature finite and >= 0; got {s.temp_bias}, {s.temp_scale}, "
                              f"{s.choice_temperature}")
        if self.sample.steps > m.tokens:
            raise ConfigError(f"sample.steps={self.sample.steps} decoding steps exceed the {m.tokens} tokens per "
                              f"image: use at most {m.tokens}")

    def to_dict(self) -> dict:
        """Plain data for YAML: tuples become lists; an optional section left unset (None) is left out."""
        return _plain(self)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        hints = field_hints(type(obj))
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (getattr(obj, f.name) is None and section_choices(hints[f.name]))}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` strings (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=1e-4)")
        key, text = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
        node[parts[-1]] = parse_yaml(text, f"the value of override {item!r}")
    return raw


def config_from_dict(raw: dict) -> Config:
    """A validated Config from parsed YAML; a `model.size` name is expanded from the size registry first."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections (family:, model:, train: ...), got "
                          f"{type(raw).__name__}")
    family = raw.get("family", "flow")
    if family not in FAMILY_SECTIONS:
        raise ConfigError(f"family must be one of {FAMILIES}, got {family!r}")
    if family != "masked":
        sample = raw.get("sample") if isinstance(raw.get("sample"), dict) else {}
        masked_only = (["tokenizer"] if "tokenizer" in raw else []) + [f"sample.{k}" for k in MASKED_SAMPLE_KEYS
                                                                       if k in sample]
        if masked_only:
            raise ConfigError(f"{', '.join(masked_only)}: masked-family settings in a family: {family} config; "
                              f"remove them, or set family: masked")
    raw = expand_size(raw, family)
    return build(Config, raw, "", ConfigError, FAMILY_SECTIONS[family]).validate()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML file (or start from defaults), apply overrides, validate."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"config file {path} is a folder: pass a YAML file such as configs/mnist_flow.yaml")
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist: pass a YAML file such as configs/mnist_flow.yaml")
        raw = parse_yaml(read_text(path, f"config file {path}"), f"config file {path}")
        if raw is None:
            raise ConfigError(f"config file {path} is empty: start from a shipped config such as "
                              f"configs/mnist_flow.yaml")
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must be a mapping of sections (family:, model:, train: ...), "
                              f"got a {type(raw).__name__}")
    return config_from_dict(apply_overrides(raw, list(overrides or [])))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_text(path: Path, what: str, error: type[Exception] = ConfigError) -> str:
    """A text file's contents, with one-line errors for unreadable or non-UTF-8 files."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} is not UTF-8 text: save it as a plain YAML text file") from None
    except OSError as e:
        raise error(f"{what} cannot be read ({e.strerror}): check the path and its permissions") from None


def parse_yaml(text: str, what: str, error: type[Exception] = ConfigError) -> Any:
    """Safe YAML with a one-line error naming `what` and the line at fault; duplicate keys are errors."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{what} is not valid YAML{where}: {problem}; fix the YAML syntax") from None


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
