"""Benchmarks that devtools registers under ``seedbed.benchmarks``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["BENCHMARKS", "harness_discovery"]


def harness_discovery(full: bool = False) -> list[dict[str, Any]]:
    """How long entry-point discovery (which imports every package's benchmarks) takes."""
    from seedbed.devtools.eval_harness import discover_benchmarks

    t0 = time.perf_counter()
    specs = discover_benchmarks()
    secs = time.perf_counter() - t0
    packages = {s.package for s in specs}
    return [
        {
            "name": "packages_registering_benchmarks",
            "value": float(len(packages)),
            "unit": "",
            "target": 6.0,
            "higher_is_better": True,
            "note": ", ".join(sorted(packages)),
        },
        {
            "name": "discovery_seconds",
            "value": secs,
            "unit": "s",
            "target": 30.0,
            "higher_is_better": False,
            "note": f"{len(specs)} benchmarks",
        },
    ]


BENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [harness_discovery]
