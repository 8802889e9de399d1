"""Build any mixer by name (used by the LM wrapper, MQAR and the benchmarks)."""

from __future__ import annotations

from typing import Any

from seedbed.sequence_models.mixers.attention import AttentionMixer
from seedbed.sequence_models.mixers.base import SequenceMixer
from seedbed.sequence_models.mixers.hyena import HyenaOperator
from seedbed.sequence_models.mixers.mamba import MambaBlock
from seedbed.sequence_models.mixers.mamba2 import Mamba2Block
from seedbed.sequence_models.mixers.retnet import MultiScaleRetention
from seedbed.sequence_models.mixers.rwkv import RWKVLoop, RWKVTimeMix

__all__ = ["MIXERS", "build_mixer"]

MIXERS: dict[str, type[SequenceMixer[Any]]] = {
    "attention": AttentionMixer,
    "retnet": MultiScaleRetention,
    "mamba": MambaBlock,
    "mamba2": Mamba2Block,
    "hyena": HyenaOperator,
    "rwkv": RWKVTimeMix,  # the time-mix alone: the LM wrapper supplies norm, MLP, residuals
    "rwkv_block": RWKVLoop,  # the full RWKV-4 block (time-mix + channel-mix + its own norms)
}


def build_mixer(name: str, d_model: int, **kwargs: Any) -> SequenceMixer[Any]:
    """``MIXERS[name](d_model, **kwargs)``; Hyena needs ``l_max`` (default 2048)."""
    if name not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; expected one of {sorted(MIXERS)}")
    if name == "hyena":
        kwargs.setdefault("l_max", 2048)
    return MIXERS[name](d_model, **kwargs)
