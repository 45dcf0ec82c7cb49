"""The error of the tokenizer package."""
from __future__ import annotations


class TokenizerError(ValueError):
    """A missing, unreadable or incompatible tokenizer, with what to do about it."""
