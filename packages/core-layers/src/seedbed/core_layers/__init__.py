"""Seedbed core layers: the building blocks every Seedbed model stands on."""

from importlib.metadata import version as _version

from seedbed.core_layers.benchmarking import Metric, Series, time_call, timed_ratio

__version__ = _version("seedbed-core-layers")

__all__ = ["Metric", "Series", "__version__", "time_call", "timed_ratio"]
