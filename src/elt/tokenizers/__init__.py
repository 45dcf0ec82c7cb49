"""VQ tokenizers for the masked generative family: images <-> token grids.

Nothing here imports `elt.config` at module level (it imports `TokenizerConfig` from this package).
"""
from .autoencoder import VQAutoencoder
from .cache import token_codes, token_grids
from .config import TokenizerConfig
from .evaluate import evaluate_tokenizer
from .pretrained import ScriptedTokenizer, TokenizerError, load_tokenizer, save_tokenizer, tokenizer_fingerprint
from .quantizer import VectorQuantizer
from .train import train_tokenizer

__all__ = [
    "ScriptedTokenizer",
    "TokenizerConfig",
    "TokenizerError",
    "VQAutoencoder",
    "VectorQuantizer",
    "evaluate_tokenizer",
    "load_tokenizer",
    "save_tokenizer",
    "token_codes",
    "token_grids",
    "tokenizer_fingerprint",
    "train_tokenizer",
]
