"""Serving: paged KV cache, continuous-batching engine, speculative decoding, quantization.

The HTTP server (:mod:`.server`, needs the ``serve`` extra: aiohttp) is imported on its own.
"""

from seedbed.sequence_models.serving.engine import (
    EngineConfig,
    LLMEngine,
    Request,
    RequestOutput,
    paged_forward,
)
from seedbed.sequence_models.serving.paged_cache import (
    BlockAllocator,
    OutOfBlocksError,
    PagedBatch,
    PagedKVCache,
    PagedLayerView,
)
from seedbed.sequence_models.serving.quantize import Int8Linear, quantize_model
from seedbed.sequence_models.serving.speculative import (
    SpeculativeDecoder,
    SpeculativeOutput,
    speculative_accept,
)

__all__ = [
    "BlockAllocator",
    "EngineConfig",
    "Int8Linear",
    "LLMEngine",
    "OutOfBlocksError",
    "PagedBatch",
    "PagedKVCache",
    "PagedLayerView",
    "Request",
    "RequestOutput",
    "SpeculativeDecoder",
    "SpeculativeOutput",
    "paged_forward",
    "quantize_model",
    "speculative_accept",
]
