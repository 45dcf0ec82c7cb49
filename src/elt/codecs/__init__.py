"""Codecs: media (uint8 pixels) <-> the codes a generator trains on (pixels in [-1, 1], VQ tokens, latents)."""
from .base import Codec, channels_first
from .pixel import PIXELS, PixelCodec, to_uint8, to_unit
from .psnr import psnr, psnr_db, unit_mse
from .vq import VQCodec

__all__ = ["PIXELS", "Codec", "PixelCodec", "VQCodec", "channels_first", "psnr", "psnr_db", "to_uint8", "to_unit",
           "unit_mse"]
