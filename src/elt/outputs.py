"""Checks of output paths that a command writes, done before any work (a bad name never costs a finished run)."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError


def check_parents(flag: str, path: Path) -> None:
    """The nearest existing folder above `path` must be a writable folder (missing ones are created)."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder: choose another path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {path}: cannot write into {parent} (permission denied): "
                                  f"choose a writable place")
            return


def output_file(flag: str, value: str, suffix: str | None = None, example: str = "samples.npz") -> Path:
    """A file path that a command may write: not a folder, ending in `suffix`, under a writable folder."""
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder: name a file{f' ending in {suffix}' if suffix else ''} "
                          f"instead, e.g. {path / example}")
    if suffix and path.suffix.lower() != suffix:
        raise ConfigError(f"{flag} {path} does not end in {suffix}: name a file ending in {suffix}, "
                          f"e.g. {path.with_name(path.stem + suffix) if path.stem else 'out' + suffix}")
    check_parents(flag, path)
    return path


def output_folder(flag: str, value: str) -> Path:
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file: pass a folder (it is created if missing)")
    check_parents(flag, path)
    return path
