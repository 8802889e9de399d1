"""Sequence mixers with their exact forms side by side (one folder per mixer)."""

from seedbed.sequence_models.mixers.attention import AttentionMixer, AttentionState
from seedbed.sequence_models.mixers.base import MixerState, SequenceMixer
from seedbed.sequence_models.mixers.hyena import HyenaFilter, HyenaOperator, HyenaState
from seedbed.sequence_models.mixers.mamba import MambaBlock, MambaState
from seedbed.sequence_models.mixers.mamba2 import Mamba2Block, Mamba2State
from seedbed.sequence_models.mixers.registry import MIXERS, build_mixer
from seedbed.sequence_models.mixers.retnet import MultiScaleRetention, RetentionState
from seedbed.sequence_models.mixers.rwkv import (
    RWKVChannelMix,
    RWKVLoop,
    RWKVState,
    RWKVTimeMix,
    RWKVTimeMixState,
)

__all__ = [
    "MIXERS",
    "AttentionMixer",
    "AttentionState",
    "HyenaFilter",
    "HyenaOperator",
    "HyenaState",
    "Mamba2Block",
    "Mamba2State",
    "MambaBlock",
    "MambaState",
    "MixerState",
    "MultiScaleRetention",
    "RWKVChannelMix",
    "RWKVLoop",
    "RWKVState",
    "RWKVTimeMix",
    "RWKVTimeMixState",
    "RetentionState",
    "SequenceMixer",
    "build_mixer",
]
