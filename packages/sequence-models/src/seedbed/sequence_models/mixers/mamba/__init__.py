"""Mamba-1 selective scan: naive / chunk / recurrent forms, the fused CPU kernel and
``MambaBlock``."""

from seedbed.sequence_models.mixers.mamba.chunk import chunk_selective_scan
from seedbed.sequence_models.mixers.mamba.fused import fused_scan_available, fused_selective_scan
from seedbed.sequence_models.mixers.mamba.layer import MambaBlock, MambaState
from seedbed.sequence_models.mixers.mamba.naive import naive_selective_scan
from seedbed.sequence_models.mixers.mamba.recurrent import (
    recurrent_selective_scan,
    selective_scan_step,
)

__all__ = [
    "MambaBlock",
    "MambaState",
    "chunk_selective_scan",
    "fused_scan_available",
    "fused_selective_scan",
    "naive_selective_scan",
    "recurrent_selective_scan",
    "selective_scan_step",
]
