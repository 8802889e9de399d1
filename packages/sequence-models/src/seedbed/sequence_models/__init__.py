"""Seedbed sequence models: long-context sequence mixers and decoders."""

from importlib.metadata import version as _version

__version__ = _version("seedbed-sequence-models")

__all__ = ["__version__"]
