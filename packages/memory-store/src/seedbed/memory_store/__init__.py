"""Seedbed memory store: vector stores, compression, hierarchical and kNN memory."""

from importlib.metadata import version as _version

__version__ = _version("seedbed-memory-store")

__all__ = ["__version__"]
