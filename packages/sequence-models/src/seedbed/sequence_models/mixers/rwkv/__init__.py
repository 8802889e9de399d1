"""RWKV-4 (Peng et al., 2023): WKV in naive / chunk / recurrent forms, and the modules."""

from seedbed.sequence_models.mixers.rwkv.chunk import chunk_wkv
from seedbed.sequence_models.mixers.rwkv.layer import (
    RWKVChannelMix,
    RWKVLoop,
    RWKVState,
    RWKVTimeMix,
    RWKVTimeMixState,
)
from seedbed.sequence_models.mixers.rwkv.naive import empty_wkv_state, naive_wkv
from seedbed.sequence_models.mixers.rwkv.recurrent import recurrent_wkv, wkv_step

__all__ = [
    "RWKVChannelMix",
    "RWKVLoop",
    "RWKVState",
    "RWKVTimeMix",
    "RWKVTimeMixState",
    "chunk_wkv",
    "empty_wkv_state",
    "naive_wkv",
    "recurrent_wkv",
    "wkv_step",
]
