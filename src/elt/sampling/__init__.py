"""Samplers. `generate` is the one entry point the CLI uses for any trained flow model."""
from .flow import ddpm_sample, euler_sample, guided, sample_images, to_uint8

__all__ = ["ddpm_sample", "euler_sample", "guided", "sample_images", "to_uint8"]
