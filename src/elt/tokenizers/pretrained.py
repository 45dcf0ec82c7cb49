"""Load and save tokenizers: our TOK_DIR folders, or a user's TorchScript file with the same interface.

A TOK_DIR holds `config.yaml` (the TokenizerConfig, the data set and image shape) and `model.safetensors`,
plus what the trainer adds (metrics.json, recon.png, log.jsonl). It is written in a temporary folder next
to its destination and renamed into place, so an interrupted write never leaves a folder that loads.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from .autoencoder import VQAutoencoder
from .config import TokenizerConfig

CONFIG_FILE, WEIGHTS_FILE = "config.yaml", "model.safetensors"
SCRIPT_ATTRIBUTES = ("encode", "decode", "codebook_size", "image_shape")


from ..errors import TokenizerError  # noqa: E402  (defined with the project's other errors)


# ---- writing -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out_dir`; on success it replaces `out_dir`, on error it is
    deleted. With overwrite=False an existing `out_dir` is an error."""
    final = Path(out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the finished folder is an ordinary one
        yield tmp
        if final.exists():
            if not overwrite:
                raise TokenizerError(f"{final} already exists: choose another output folder or allow overwriting")
            trash = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
            os.replace(final, trash / "old")
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def tokenizer_record(model: VQAutoencoder, cfg: TokenizerConfig, data: dict | None = None) -> dict:
    """What config.yaml holds: the tokenizer section, the data it was trained on and the shapes."""
    return {"tokenizer": dataclasses.asdict(cfg), "data": dict(data or {}),
            "image_shape": list(model.image_shape), "token_grid": list(model.token_grid),
            "codebook_size": model.codebook_size}


def write_model_files(folder: Path, model: VQAutoencoder, cfg: TokenizerConfig, data: dict | None = None) -> None:
    """config.yaml + model.safetensors into an (already staged) folder."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
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
    from ..checkpoint import state_mismatch  # here: elt.checkpoint imports elt.config, which imports us

    detail = state_mismatch(model.state_dict(), state)
    if detail:
        raise TokenizerError(f"the weights in {tok_dir / WEIGHTS_FILE} do not match its config.yaml ({detail}); "
                             f"the folder was edited or mixed from two runs: train the tokenizer again")
    model.load_state_dict(state)
    return model.to(device).eval()


class ScriptedTokenizer(nn.Module):
    """A TorchScript tokenizer behind the VQAutoencoder interface (encode, decode, codebook_size, token_grid,
    image_shape). The scripted module must provide those, with `grid_h`/`grid_w` accepted for token_grid."""

    def __init__(self, module: torch.jit.ScriptModule, source: str = "TorchScript module"):
        super().__init__()
        missing = [a for a in SCRIPT_ATTRIBUTES if not hasattr(module, a)]
        has_grid = hasattr(module, "token_grid") or (hasattr(module, "grid_h") and hasattr(module, "grid_w"))
        if not has_grid:
            missing.append("token_grid (or grid_h and grid_w)")
        if missing:
            raise TokenizerError(f"{source} does not have the tokenizer interface: it lacks {', '.join(missing)}; "
                                 f"script a module with methods encode(x) -> (B, h, w) tokens and "
                                 f"decode(tokens) -> (B, C, H, W) images in [-1, 1], and attributes codebook_size, "
                                 f"token_grid (h, w) and image_shape (C, H, W)")
        self.module = module
        self.source = source
        try:
            self._codebook_size = int(module.codebook_size)
            grid = module.token_grid if hasattr(module, "token_grid") else (module.grid_h, module.grid_w)
            self._grid = tuple(int(v) for v in grid)
            self._image_shape = tuple(int(v) for v in module.image_shape)
        except (TypeError, ValueError) as e:
            raise TokenizerError(f"{source}: codebook_size must be an int, token_grid two ints and image_shape "
                                 f"three ints ({e})") from None
        if len(self._grid) != 2 or len(self._image_shape) != 3:
            raise TokenizerError(f"{source}: token_grid must be (h, w) and image_shape (C, H, W), got "
                                 f"{self._grid} and {self._image_shape}")

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    @property
    def token_grid(self) -> tuple[int, int]:
        return self._grid

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._image_shape

    @property
    def device(self) -> torch.device:
        for t in list(self.module.parameters()) + list(self.module.buffers()):
            return t.device
        return torch.device("cpu")

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self._image_shape:
            raise ValueError(f"the tokenizer expects images of shape (B, {', '.join(map(str, self._image_shape))}), "
                             f"got {tuple(x.shape)}: resize the data to the tokenizer's image shape")
        tokens = self.module.encode(x.to(self.device).float())
        if tuple(tokens.shape) != (x.shape[0], *self._grid):
            raise TokenizerError(f"{self.source}.encode returned shape {tuple(tokens.shape)}, expected "
                                 f"{(x.shape[0], *self._grid)}")
        return tokens.long()

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dtype.is_floating_point or tokens.ndim != 3 or tuple(tokens.shape[1:]) != self._grid:
            raise ValueError(f"tokens must be an integer tensor of shape (B, {self._grid[0]}, {self._grid[1]}), "
                             f"got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self._codebook_size):
            raise ValueError(f"token values must lie in 0..{self._codebook_size - 1}, got "
                             f"{int(tokens.min())}..{int(tokens.max())}")
        return self.module.decode(tokens.to(self.device, torch.long)).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)


def load_tokenizer(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
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
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
