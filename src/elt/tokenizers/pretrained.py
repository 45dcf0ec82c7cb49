"""Load and save tokenizers: our TOK_DIR folders, or a user's TorchScript file with the same interface.

A TOK_DIR holds `config.yaml` (the TokenizerConfig, the data set and image shape) and `model.safetensors`,
plus what the trainer adds (metrics.json, recon.png, log.jsonl). It is written in a temporary folder next
to its destination and renamed into place, so an interrupted write never leaves a folder that loads.
Both kinds load as a `VQCodec` (the TorchScript adapter is in scripted.py).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from ..atomic import staged_dir
from ..codecs.vq import VQCodec
from ..hashing import state_dict_sha1
from ..weights import load_strict, save_weights
from .autoencoder import VQAutoencoder
from .config import TokenizerConfig
from .errors import TokenizerError
from .scripted import SCRIPT_ATTRIBUTES, ScriptedTokenizer

CONFIG_FILE, WEIGHTS_FILE = "config.yaml", "model.safetensors"
__all__ = ["CONFIG_FILE", "SCRIPT_ATTRIBUTES", "WEIGHTS_FILE", "ScriptedTokenizer", "TokenizerError", "load_tokenizer",
           "read_record", "save_tokenizer", "staged_dir", "tokenizer_fingerprint", "tokenizer_record",
           "write_model_files"]


# ---- writing -------------------------------------------------------------------------------------------
def tokenizer_record(model: VQAutoencoder, cfg: TokenizerConfig, data: dict | None = None) -> dict:
    """What config.yaml holds: the tokenizer section, the data it was trained on and the shapes."""
    return {"tokenizer": dataclasses.asdict(cfg), "data": dict(data or {}),
            "image_shape": list(model.image_shape), "token_grid": list(model.token_grid),
            "codebook_size": model.codebook_size}


def write_model_files(folder: Path, model: VQAutoencoder, cfg: TokenizerConfig, data: dict | None = None) -> None:
    """config.yaml + model.safetensors into an (already staged) folder."""
    save_weights(model.state_dict(), folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(tokenizer_record(model, cfg, data), sort_keys=False))


def save_tokenizer(model: VQAutoencoder, cfg: TokenizerConfig, out_dir: str | os.PathLike[str],
                   data: dict | None = None) -> Path:
    """Write a loadable TOK_DIR atomically (replacing an existing one). Returns its path."""
    with staged_dir(out_dir) as tmp:
        write_model_files(tmp, model, cfg, data)
    return Path(out_dir)


# ---- reading -------------------------------------------------------------------------------------------
def read_record(tok_dir: str | os.PathLike[str]) -> dict:
    """The parsed config.yaml of a TOK_DIR."""
    path = Path(tok_dir) / CONFIG_FILE
    try:
        record = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise TokenizerError(f"cannot read {path} ({e}): train the tokenizer again") from None
    if not isinstance(record, dict) or not isinstance(record.get("tokenizer"), dict) or "image_shape" not in record:
        raise TokenizerError(f"{path} is not a tokenizer config (no `tokenizer` section or `image_shape`): "
                             f"train the tokenizer again with `elt tokenizer train CONFIG --out {Path(tok_dir)}`")
    return record


def _load_dir(tok_dir: Path, device: str | torch.device) -> VQAutoencoder:
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (tok_dir / f).is_file()]
    if missing:
        raise TokenizerError(f"{tok_dir} is not a tokenizer folder: it lacks {', '.join(missing)}; train one with "
                             f"`elt tokenizer train CONFIG --out {tok_dir}`")
    record = read_record(tok_dir)
    fields = {f.name for f in dataclasses.fields(TokenizerConfig)}
    unknown = sorted(set(record["tokenizer"]) - fields)
    if unknown:
        raise TokenizerError(f"{tok_dir / CONFIG_FILE} has unknown tokenizer keys {unknown}: it was written by "
                             f"another version of elt; train the tokenizer again")
    cfg = TokenizerConfig(**record["tokenizer"])
    try:
        model = VQAutoencoder(cfg, tuple(record["image_shape"]))
    except ValueError as e:
        raise TokenizerError(f"{tok_dir / CONFIG_FILE} describes an invalid tokenizer: {e}") from None
    try:
        state = load_file(str(tok_dir / WEIGHTS_FILE))
    except Exception as e:  # noqa: BLE001 (safetensors raises its own error types)
        raise TokenizerError(f"cannot read {tok_dir / WEIGHTS_FILE} ({e}): train the tokenizer again") from None
    load_strict(model, state, lambda detail: TokenizerError(
        f"the weights in {tok_dir / WEIGHTS_FILE} do not match its config.yaml ({detail}); "
        f"the folder was edited or mixed from two runs: train the tokenizer again"))
    return model.to(device).eval()


def load_tokenizer(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> VQCodec:
    """A TOK_DIR written by `elt tokenizer train`, or a TorchScript file with encode/decode -> eval-mode module."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _load_dir(path, device)
    if not path.exists():
        raise TokenizerError(f"tokenizer {path} does not exist: train one with `elt tokenizer train CONFIG --out "
                             f"{path}`, or pass a TorchScript tokenizer file")
    try:
        module = torch.jit.load(str(path), map_location=device)
    except Exception as e:  # noqa: BLE001 (TorchScript raises RuntimeError or its own types)
        raise TokenizerError(f"{path} is neither a tokenizer folder nor a TorchScript file ({e.__class__.__name__}); "
                             f"pass a TOK_DIR written by `elt tokenizer train` or a file saved with "
                             f"torch.jit.save") from None
    return ScriptedTokenizer(module, str(path)).eval()


def tokenizer_fingerprint(model: nn.Module) -> str:
    """sha1 over the state dict (names, dtypes, shapes, bytes): changes whenever the weights change."""
    return state_dict_sha1(model)
