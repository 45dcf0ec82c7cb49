"""Samplers of the flow family and the pieces both families share; the masked family's are in .masked."""
from .common import to_uint8
from .flow import ddpm_sample, euler_sample, guided, sample_images

__all__ = ["ddpm_sample", "euler_sample", "guided", "sample_images", "to_uint8"]
