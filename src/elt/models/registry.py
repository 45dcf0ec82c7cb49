"""Named model sizes (in the style of DiT's `DiT_models`): `model.size: NAME` in a config, or `elt train --model
NAME`, fills in the architecture and the trained loop count L_max of a known configuration.

A name reads `ELT-<scale>/<patch>-<N>x<L>` (flow family) or `ELT-MaskGIT-<scale>-<N>x<L>` (masked family): N
unique blocks looped L times (`DiT/2-32x1`: the paper's unlooped 32-block baseline). Keys given next to `size`
(in the same section, or `train.loops`) win over the
named values, so `model.size: ELT-MNIST/7-2x4` with `model.dim: 128` is the same model at width 128. Every entry
names its source; widths the paper does not state are marked as inferred.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class ModelSize:
    """One named configuration: the `model` keys it sets, its loop count L_max and where it comes from."""

    family: str  # "flow" | "masked"
    model: dict[str, Any] = field(default_factory=dict)
    loops: int = 1  # train.loops (L_max)
    source: str = ""
    paper_params: float | None = None  # the parameter count the paper reports (None: not reported)
    paper_params_note: str = ""  # where that count comes from, and how exact it is
    mode: str | None = None  # train.mode it sets (None: the config's; "vanilla" for an unlooped baseline)


_MNIST_FLOW = {"image_size": 28, "channels": 1, "num_classes": 10, "mlp_ratio": 4.0}
_IMAGENET_DIT = {"image_size": 32, "channels": 4, "patch": 2, "num_classes": 1000, "mlp_ratio": 4.0,
                 "dim": 1920, "heads": 16}  # 32×32×4 SD-VAE latents of 256×256 images
_IMAGENET_MASKGIT = {"image_size": 256, "channels": 3, "grid": 16, "codebook_size": 1024, "num_classes": 1000,
                     "mlp_ratio": 4.0, "conditioning": "token"}
_DIT_SOURCE = ("ELT paper, Table 2 (ImageNet 256 diffusion, effective depth 32) for the N×L split and §1.5 for the "
               "32×32×4 SD-VAE latents; patch 2 is DiT's usual choice and width 1920 (16 heads) is inferred "
               "from the ≈67M parameters per layer (≈18·d² for an adaLN DiT block): the paper's Table 7 is not "
               "available")
_MASKGIT_SOURCE = ("ELT paper, {table} (ImageNet 256, 16×16 tokens of a 1024-code VQGAN); width {width} from "
                   "Table 6{heads}; class token as in MaskGIT (the paper does not state its conditioning)")

_TABLE2 = "ELT paper, Table 2 (secondary transcription)"
_INFERRED = ("not stated by the paper: inferred as 12·d² per block times N, the arithmetic that gives MaskGIT-L's "
             "and MAGVIT-L's 24 layers at d = 1024 their 303M / 306M")

MODEL_SIZES: dict[str, ModelSize] = {
    # the MNIST configurations shipped in configs/
    "ELT-MNIST/7-2x4": ModelSize("flow", {**_MNIST_FLOW, "patch": 7, "dim": 256, "heads": 4, "blocks": 2}, 4,
                                 "configs/mnist_flow.yaml and configs/mnist_diffusion.yaml"),
    "ELT-MNIST-d384/7-4x4": ModelSize("flow", {**_MNIST_FLOW, "patch": 7, "dim": 384, "heads": 6, "blocks": 4}, 4,
                                      "configs/bench_d384.yaml"),
    "ELT-MaskGIT-MNIST-2x4": ModelSize("masked", {"image_size": 28, "channels": 1, "grid": 7, "codebook_size": 256,
                                                  "num_classes": 10, "mlp_ratio": 4.0, "dim": 256, "heads": 4,
                                                  "blocks": 2}, 4, "configs/mnist_masked.yaml"),
    # ELT-DiT on ImageNet 256 (latent diffusion), the N×L splits of the paper's Table 2
    "ELT-DiT/2-1x32": ModelSize("flow", {**_IMAGENET_DIT, "blocks": 1}, 32, _DIT_SOURCE, 69e6, _TABLE2),
    "ELT-DiT/2-4x8": ModelSize("flow", {**_IMAGENET_DIT, "blocks": 4}, 8, _DIT_SOURCE, 271e6, _TABLE2),
    "ELT-DiT/2-8x4": ModelSize("flow", {**_IMAGENET_DIT, "blocks": 8}, 4, _DIT_SOURCE, 539e6, _TABLE2),
    "ELT-DiT/2-16x2": ModelSize("flow", {**_IMAGENET_DIT, "blocks": 16}, 2, _DIT_SOURCE, 1.1e9,
                                _TABLE2 + " (given as 1.1B: two significant digits)"),
    "DiT/2-32x1": ModelSize("flow", {**_IMAGENET_DIT, "blocks": 32}, 1, _DIT_SOURCE + "; the 32 unique blocks of "
                            "the paper's DiT-32 baseline, run once", 2.1e9,
                            _TABLE2 + " (given as 2.1B: two significant digits)", mode="vanilla"),
    # ELT-MaskGIT on ImageNet 256, the paper's Tables 1 and 3
    "ELT-MaskGIT-B-6x2": ModelSize("masked", {**_IMAGENET_MASKGIT, "dim": 768, "heads": 12, "blocks": 6}, 2,
                                   _MASKGIT_SOURCE.format(table="Table 3", width=768,
                                                          heads="; 12 heads (64 per head) inferred")),
    "ELT-MaskGIT-L-8x3": ModelSize("masked", {**_IMAGENET_MASKGIT, "dim": 1024, "heads": 16, "blocks": 8}, 3,
                                   _MASKGIT_SOURCE.format(table="Table 1", width=1024, heads=", 16 heads"),
                                   101e6, _INFERRED),
    "ELT-MaskGIT-L-12x2": ModelSize("masked", {**_IMAGENET_MASKGIT, "dim": 1024, "heads": 16, "blocks": 12}, 2,
                                    _MASKGIT_SOURCE.format(table="Table 1", width=1024, heads=", 16 heads"),
                                    152e6, _INFERRED),
    "ELT-MaskGIT-XL-7x4": ModelSize("masked", {**_IMAGENET_MASKGIT, "dim": 1152, "heads": 16, "blocks": 7}, 4,
                                    _MASKGIT_SOURCE.format(table="Table 1", width=1152, heads=", 16 heads"),
                                    111e6, _INFERRED),
    "ELT-MaskGIT-H-8x4": ModelSize("masked", {**_IMAGENET_MASKGIT, "dim": 1280, "heads": 16, "blocks": 8}, 4,
                                   _MASKGIT_SOURCE.format(table="Table 3", width=1280,
                                                          heads="; 16 heads (80 per head) inferred")),
    # ELT-MAGVIT on UCF-101 (configs/ucf101_masked.yaml): 16x128x128 clips as 4x16x16 tokens of a 1024-code 3-D VQ
    "ELT-MAGVIT-UCF101-6x4": ModelSize("masked", {"image_size": 128, "channels": 3, "frames": 16, "time_grid": 4,
                                                  "grid": 16, "codebook_size": 1024, "num_classes": 101,
                                                  "mlp_ratio": 4.0, "conditioning": "token", "dim": 1024,
                                                  "heads": 16, "blocks": 6}, 4,
                                       "ELT paper, Table 4 and Fig. 7 (UCF-101, MAGVIT framework); width 1024 and 16 "
                                       "heads from MAGVIT-L", 76e6, _INFERRED),
}


def model_size(name: str) -> ModelSize:
    """The registry entry `name`, or a ConfigError listing the choices."""
    if name not in MODEL_SIZES:
        raise ConfigError(f"unknown model size {name!r}: choose one of {', '.join(MODEL_SIZES)}")
    return MODEL_SIZES[name]


def expand_size(raw: dict, family: str) -> dict:
    """A copy of the raw config with `model.size` replaced by the named keys (explicit keys win); unchanged
    without `model.size`."""
    model = raw.get("model")
    if not isinstance(model, dict) or "size" not in model:
        return raw
    name = model["size"]
    if not isinstance(name, str):
        raise ConfigError(f"model.size must be a string naming a model size, got {name!r}: choose one of "
                          f"{', '.join(MODEL_SIZES)}")
    entry = model_size(name)
    if entry.family != family:
        raise ConfigError(f"model.size {name!r} is a {entry.family}-family model but the config has family: "
                          f"{family}; set family: {entry.family} or pick a {family}-family size")
    train = raw.get("train") if isinstance(raw.get("train"), dict) else {}
    out = dict(raw)
    out["model"] = {**entry.model, **{k: v for k, v in model.items() if k != "size"}}
    if "train" not in raw or isinstance(raw["train"], dict):
        out["train"] = {"loops": entry.loops, **({"mode": entry.mode} if entry.mode else {}), **train}
    return out


def size_overrides(name: str) -> list[str]:
    """`key=value` overrides that select size `name` over whatever a config file says (`elt train --model`):
    `model.size` plus every key the size sets, so only overrides given after them change the named model."""
    import json

    entry = model_size(name)
    return ([f"model.size={name}"] + [f"model.{k}={json.dumps(v)}" for k, v in entry.model.items()]
            + [f"train.loops={entry.loops}"] + ([f"train.mode={entry.mode}"] if entry.mode else []))
