"""A masked run's tokenizer: find it, check it against the generator, copy it into the run, encode the data.

The tokenizer comes from `tokenizer.path`; it is trained there first when missing, copied into
RUN_DIR/tokenizer (so a run folder is self-contained) and the training set is encoded once into a code
folder under RUN_DIR/tokenizer/tokens. `elt.config` is imported lazily: it imports this package.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .. import distributed
from ..atomic import staged_dir
from ..data.codes import CodeDataset
from .cache import token_codes
from .pretrained import load_tokenizer

RUN_TOKENIZER = "tokenizer"  # RUN_DIR/tokenizer: the run's own copy
TOKENS = "tokens"  # RUN_DIR/tokenizer/tokens: the code folders of the encoded data


def loadable(path: Path) -> Path | None:
    """What load_tokenizer takes for `path`: a tokenizer folder, a TorchScript file, a folder holding
    tokenizer.pt; None when there is nothing to load."""
    if path.is_file():
        return path
    if (path / "config.yaml").is_file() and (path / "model.safetensors").is_file():
        return path
    if (path / "tokenizer.pt").is_file():
        return path / "tokenizer.pt"
    return None


def slug(name: str) -> str:
    """A data set name as a short file-name part: non-alphanumerics become `_`, at most 60 characters."""
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")[-60:]


def check_tokenizer(tok, model_cfg, image_shape: tuple | None = None) -> None:
    """The tokenizer must produce the vocabulary, grid and image shape the generator was built for."""
    from ..config import ConfigError

    if tok.codebook_size != model_cfg.codebook_size:
        raise ConfigError(f"the tokenizer has {tok.codebook_size} codes but model.codebook_size="
                          f"{model_cfg.codebook_size}: set model.codebook_size (and tokenizer.codebook_size) to match")
    if tuple(tok.token_grid) != tuple(model_cfg.token_grid):
        raise ConfigError(f"the tokenizer makes a {tok.token_grid} token grid but the model expects "
                          f"{model_cfg.token_grid}: set model.grid (and model.time_grid for clips) to match")
    if image_shape is not None and tuple(tok.image_shape) != tuple(image_shape):
        raise ConfigError(f"the tokenizer reads images of shape {tuple(tok.image_shape)} but the data gives "
                          f"{tuple(image_shape)}: train a tokenizer on this data (elt tokenizer train)")


def run_tokenizer(run_dir, cfg):
    """The tokenizer of a trained run: RUN_DIR/tokenizer, else the config's tokenizer.path."""
    from ..config import ConfigError

    candidates = []
    if run_dir is not None:
        run_dir = Path(run_dir)
        if run_dir.parent.name == "checkpoints":  # a checkpoint folder: its run is two levels up
            run_dir = run_dir.parent.parent
        candidates.append(run_dir / RUN_TOKENIZER)
    candidates.append(Path(cfg.tokenizer.path))
    for i, path in enumerate(candidates):
        found = loadable(path)
        if found is not None:
            if i > 0:  # the fallback may be another (e.g. retrained) tokenizer: its images would be wrong
                print(f"elt: warning: the run's own tokenizer {candidates[0]} is missing; using tokenizer.path "
                      f"{path} instead, which gives wrong images unless it is the tokenizer the run was trained "
                      f"with (copy that one into {candidates[0]})", file=sys.stderr)
            if found.is_file():  # a TorchScript file: loading it runs code that came with the run
                print(f"elt: note: {found} is a TorchScript tokenizer, a program that runs when loaded: use run "
                      f"folders whose tokenizer you trust", file=sys.stderr)
            return load_tokenizer(found)
    raise ConfigError(f"no tokenizer found for this masked run (looked in {', '.join(map(str, candidates))}): "
                      f"copy its tokenizer folder into RUN_DIR/tokenizer or set tokenizer.path")


def copy_tokenizer(source: Path, dest: Path) -> None:
    """Copy a tokenizer folder (without its token caches) or a TorchScript file (as tokenizer.pt) to `dest`,
    atomically."""
    with staged_dir(dest) as tmp:
        if source.is_file():  # a TorchScript tokenizer brought by the user
            shutil.copy2(source, tmp / "tokenizer.pt")
        else:
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(TOKENS), dirs_exist_ok=True)


def ensure_run_codes(cfg, data, run_dir, dist, progress: bool = True) -> CodeDataset:
    """The token codes of `data` under the run's own tokenizer, making whatever is missing: the tokenizer at
    tokenizer.path (trained), its copy in RUN_DIR/tokenizer, the code folder. Rank 0 writes; every rank reads."""
    from .train import train_tokenizer

    run_dir = Path(run_dir)
    own, source = run_dir / RUN_TOKENIZER, Path(cfg.tokenizer.path)
    if dist.is_main and loadable(own) is None:
        if loadable(source) is None:
            print(f"no tokenizer at {source}: training it first (the same as `elt tokenizer train CONFIG "
                  f"--out {source}`)", file=sys.stderr)
            train_tokenizer(cfg.tokenizer, cfg.data.name, source, image_size=cfg.data.image_size,
                            channels=cfg.data.channels, progress=progress, data_options=cfg.data_options)
        # check it before copying: a bad tokenizer.path never lands in the run folder
        check_tokenizer(load_tokenizer(loadable(source)), cfg.model, tuple(data.image_shape))
        copy_tokenizer(source, own)
    distributed.barrier()
    tok = load_tokenizer(loadable(own))
    check_tokenizer(tok, cfg.model, tuple(data.image_shape))
    key = f"{slug(cfg.data.name)}-train"
    if dist.is_main:  # encode once; the other ranks read the cache
        token_codes(tok, data, own / TOKENS, key=key, progress=progress)
    distributed.barrier()
    return token_codes(tok, data, own / TOKENS, key=key, progress=False)
