"""Seedbed sequence models: long-context sequence mixers and decoders."""

from importlib.metadata import version as _version

from seedbed.sequence_models.lm import LMConfig, LMState, MixerLM
from seedbed.sequence_models.mixers import (
    MIXERS,
    AttentionMixer,
    AttentionState,
    HyenaFilter,
    HyenaOperator,
    HyenaState,
    Mamba2Block,
    Mamba2State,
    MambaBlock,
    MambaState,
    MixerState,
    MultiScaleRetention,
    RetentionState,
    RWKVChannelMix,
    RWKVLoop,
    RWKVState,
    RWKVTimeMix,
    RWKVTimeMixState,
    SequenceMixer,
    build_mixer,
)

__version__ = _version("seedbed-sequence-models")

__all__ = [
    # mixers (issue 5)
    "MIXERS",
    "AttentionMixer",
    "AttentionState",
    "HyenaFilter",
    "HyenaOperator",
    "HyenaState",
    "LMConfig",
    "LMState",
    "Mamba2Block",
    "Mamba2State",
    "MambaBlock",
    "MambaState",
    "MixerLM",
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
    "__version__",
]
