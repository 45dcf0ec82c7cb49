"""Samplers of the flow family and the pieces both families share; the masked family's are in .masked."""
from .common import guided_call, guided_fn, network_fn, to_uint8
from .flow import ddpm_sample, ddpm_solve, euler_sample, euler_solve, guided, sample_images

__all__ = ["ddpm_sample", "ddpm_solve", "euler_sample", "euler_solve", "guided", "guided_call", "guided_fn",
           "network_fn", "sample_images", "to_uint8"]
