"""Seedbed memory store: vector stores, compression, hierarchical and kNN memory."""

from importlib.metadata import version as _version

from seedbed.memory_store.async_store import AsyncFaissVectorStore, RWLock
from seedbed.memory_store.compression import ReservoirSampler, StreamingCompressor
from seedbed.memory_store.faiss_store import FaissVectorStore, ReadOnlyStoreError
from seedbed.memory_store.hierarchical_memory import HierarchicalMemory, MemorySearchResult
from seedbed.memory_store.infinite_context import (
    ChunkWiseRetrainer,
    InfiniteContextConfig,
    InfiniteContextModel,
    evaluate,
    load_checkpoint,
    save_checkpoint,
)
from seedbed.memory_store.link_slot_attention import LinkSlotAttention
from seedbed.memory_store.pg_store import PgVectorStore
from seedbed.memory_store.vector_store import VectorStore

__version__ = _version("seedbed-memory-store")

__all__ = [
    "AsyncFaissVectorStore",
    "ChunkWiseRetrainer",
    "FaissVectorStore",
    "HierarchicalMemory",
    "InfiniteContextConfig",
    "InfiniteContextModel",
    "LinkSlotAttention",
    "MemorySearchResult",
    "PgVectorStore",
    "RWLock",
    "ReadOnlyStoreError",
    "ReservoirSampler",
    "StreamingCompressor",
    "VectorStore",
    "__version__",
    "evaluate",
    "load_checkpoint",
    "save_checkpoint",
]
