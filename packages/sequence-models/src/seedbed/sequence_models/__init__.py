"""Seedbed sequence models: long-context sequence mixers and decoders."""

from importlib.metadata import version as _version

from seedbed.sequence_models.mixers import (
    MixerState,
    RWKVChannelMix,
    RWKVLoop,
    RWKVState,
    RWKVTimeMix,
    RWKVTimeMixState,
    SequenceMixer,
)

__version__ = _version("seedbed-sequence-models")

__all__ = [
    "MixerState",
    "RWKVChannelMix",
    "RWKVLoop",
    "RWKVState",
    "RWKVTimeMix",
    "RWKVTimeMixState",
    "SequenceMixer",
    "__version__",
]
