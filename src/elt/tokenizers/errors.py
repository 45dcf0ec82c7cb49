"""The error of the tokenizer package (defined with the project's other errors in elt.errors)."""
from __future__ import annotations

from ..errors import TokenizerError

__all__ = ["TokenizerError"]
