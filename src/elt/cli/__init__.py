"""`elt` command line: data, train, sample, anytime, eval, bench, tokenizer; one module per sub-command.

The work itself lives in the library (`elt.train`, `elt.sampling.generate`, `elt.anytime_run`, `elt.eval`,
`elt.bench`), so every command is also callable from Python."""
from ..sampling.generate import generate  # kept importable from elt.cli, where it was defined
from .main import build_parser, main

__all__ = ["build_parser", "generate", "main"]
