"""Attention: the dispatching ``attention()``, its math reference, chunked and top-k forms,
and the ``MultiHeadAttention`` module."""

from seedbed.core_layers.attention.chunked import chunked_attention
from seedbed.core_layers.attention.functional import (
    _HAS_FLASH2,
    _HAS_FLASH3,
    BACKENDS,
    attention,
    last_backend,
)
from seedbed.core_layers.attention.math import math_attention
from seedbed.core_layers.attention.module import MultiHeadAttention
from seedbed.core_layers.attention.topk import topk_sparse_attention

__all__ = [
    "BACKENDS",
    "_HAS_FLASH2",
    "_HAS_FLASH3",
    "MultiHeadAttention",
    "attention",
    "chunked_attention",
    "last_backend",
    "math_attention",
    "topk_sparse_attention",
]
