"""Hyena: long causal convolution in naive / FFT / cached forms, the filter and the operator."""

from seedbed.sequence_models.mixers.hyena.chunk import fft_causal_conv
from seedbed.sequence_models.mixers.hyena.layer import HyenaFilter, HyenaOperator, HyenaState
from seedbed.sequence_models.mixers.hyena.naive import direct_causal_conv
from seedbed.sequence_models.mixers.hyena.recurrent import cached_conv_step, recurrent_causal_conv

__all__ = [
    "HyenaFilter",
    "HyenaOperator",
    "HyenaState",
    "cached_conv_step",
    "direct_causal_conv",
    "fft_causal_conv",
    "recurrent_causal_conv",
]
