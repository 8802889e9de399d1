"""Seedbed developer tools: the eval harness and research-engineering utilities.

Submodules are imported lazily, so that ``python -m seedbed.devtools.<tool>`` runs each tool
as ``__main__`` without a second copy of it already in ``sys.modules``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version as _version
from typing import Any

__version__ = _version("seedbed-devtools")

# public name -> submodule that defines it
_EXPORTS = {
    "BenchmarkSpec": "eval_harness",
    "discover_benchmarks": "eval_harness",
    "run_benchmarks": "eval_harness",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"seedbed.devtools.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'seedbed.devtools' has no attribute {name!r}")
