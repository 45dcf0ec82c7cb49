"""The project's error classes, under one `EltError` base that the command line catches in one place.

Each class also keeps its builtin base (ValueError or RuntimeError), so callers that catch those still work.
`exit_code` is the status `elt` exits with: 2 for a problem the user can fix in the input, 1 for a run that
could not go on.
"""
from __future__ import annotations


class EltError(Exception):
    """Any problem the project reports with one clear line: what is wrong and what to do."""

    exit_code = 2


class ConfigError(EltError, ValueError):
    """A configuration problem, with the key at fault and how to fix it."""


class TokenizerError(EltError, ValueError):
    """A missing, unreadable or incompatible tokenizer, with what to do about it."""


class CheckpointError(EltError, RuntimeError):
    """A missing, unreadable or incompatible checkpoint."""


class DataError(EltError, RuntimeError):
    """A data problem, with one clear message: what is wrong and what to do."""


class TrainingError(EltError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""

    exit_code = 1


class PeerUnavailable(EltError, RuntimeError):
    """The benchmark peer cannot be built here; the message says why and how to fix it."""


class EltWarning(UserWarning):
    """Something that will run, but not as the user probably expects (the CLI prints it as `elt: warning: …`)."""


__all__ = ["EltError", "EltWarning", "ConfigError", "TokenizerError", "CheckpointError", "DataError", "TrainingError",
           "PeerUnavailable"]
