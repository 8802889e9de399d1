"""Infinite-context training: RWKV recurrence + compressed hierarchical kNN memory (seed 002)."""

from seedbed.memory_store.infinite_context.data import (
    ChunkStreams,
    load_corpus,
    split_corpus,
    stdlib_corpus,
    stdlib_files,
)
from seedbed.memory_store.infinite_context.model import (
    InfiniteContextConfig,
    InfiniteContextModel,
)
from seedbed.memory_store.infinite_context.trainer import (
    ChunkWiseRetrainer,
    evaluate,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "ChunkStreams",
    "ChunkWiseRetrainer",
    "InfiniteContextConfig",
    "InfiniteContextModel",
    "evaluate",
    "load_checkpoint",
    "load_corpus",
    "save_checkpoint",
    "split_corpus",
    "stdlib_corpus",
    "stdlib_files",
]
