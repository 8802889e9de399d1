"""Mamba-2 SSD: naive / chunk / recurrent forms and ``Mamba2Block``."""

from seedbed.sequence_models.mixers.mamba2.chunk import chunk_ssd
from seedbed.sequence_models.mixers.mamba2.layer import Mamba2Block, Mamba2State
from seedbed.sequence_models.mixers.mamba2.naive import expand_groups, naive_ssd
from seedbed.sequence_models.mixers.mamba2.recurrent import recurrent_ssd, ssd_step

__all__ = [
    "Mamba2Block",
    "Mamba2State",
    "chunk_ssd",
    "expand_groups",
    "naive_ssd",
    "recurrent_ssd",
    "ssd_step",
]
