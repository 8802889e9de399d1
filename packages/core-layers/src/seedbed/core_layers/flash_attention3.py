"""The seed's FlashAttention-3 wrapper (002, S-2), kept under its original module name.

It means exactly :func:`seedbed.core_layers.attention.attention`: FlashAttention-3 when
``flash_attn_interface`` imports (``_HAS_FLASH3``) and the call suits it, otherwise the next
backend (FlashAttention-2, torch SDPA, math); :func:`last_backend` says which one ran.
"""

from seedbed.core_layers.attention.functional import (
    _HAS_FLASH2,
    _HAS_FLASH3,
    attention,
    last_backend,
)

__all__ = ["_HAS_FLASH2", "_HAS_FLASH3", "attention", "last_backend"]
