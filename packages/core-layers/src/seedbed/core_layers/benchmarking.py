"""Plain-data benchmark results shared by every Seedbed package.

A benchmark is a callable ``bench(full: bool = False) -> list[dict]`` listed in a package's
``BENCHMARKS`` and registered under the entry-point group ``seedbed.benchmarks``. Each dict is
a :class:`Metric` turned into plain data with :meth:`Metric.as_dict`, so that ``seedbed-eval``
(devtools, which imports no sibling package) can read it without importing this module.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Metric", "Series", "time_call", "timed_ratio"]


@dataclass(frozen=True)
class Series:
    """A measured curve a person would rather look at than read (drawn as a PNG chart)."""

    x: Sequence[float]  # abscissa values, e.g. sequence lengths
    y: Sequence[float]  # measured values, same length as x
    xlabel: str = "x"
    ylabel: str = "y"
    label: str = ""  # legend entry; series with the same chart name share one plot
    logx: bool = False
    logy: bool = False

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"Series needs len(x) == len(y), got {len(self.x)} and {len(self.y)}")


@dataclass(frozen=True)
class Metric:
    """One measured number and, optionally, the target it is held to."""

    name: str  # e.g. "peak_memory_ratio"
    value: float  # the measurement itself, never an estimate
    unit: str = ""  # e.g. "x", "tokens/s", "MiB"
    target: float | None = None  # pass threshold, None for a metric that is only reported
    higher_is_better: bool = True  # direction of the comparison with target
    series: list[Series] = field(default_factory=list)  # curves behind the value, if any
    note: str = ""  # what was compared, at which size

    def __post_init__(self) -> None:
        if not isinstance(self.value, (int, float)):
            raise TypeError(f"Metric.value must be a number, got {type(self.value).__name__}")

    @property
    def passed(self) -> bool | None:
        """True/False against the target, None when there is no target."""
        if self.target is None:
            return None
        if math.isnan(self.value):
            return False
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the eval harness (JSON-serialisable)."""
        d = asdict(self)
        d["value"] = float(self.value)
        d["passed"] = self.passed
        return d


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Collect garbage once, then keep the collector off until the block ends (as timeit
    does). This module used to collect right before each timed call; that pass over every
    Python object (~40 ms in a benchmark process) left the next call of an 11 ms vectorised
    op (Mamba-1's chunked scan, one thread) 1.6 ms (15%) slower, as a 40 ms sleep did."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_counts(repeats: int, warmup: int) -> None:
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")


def time_call(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` back-to-back runs after
    ``warmup`` runs, with the garbage collector off while they run.

    For CUDA work pass a ``fn`` that synchronises before it returns.
    """
    _check_counts(repeats, warmup)
    for _ in range(warmup):
        fn()
    times = []
    with _gc_paused():
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed_ratio(
    baseline: Callable[[], Any],
    candidate: Callable[[], Any],
    *,
    repeats: int = 5,
    warmup: int = 1,
) -> tuple[float, float, float]:
    """Time two callables side by side, interleaved, in one run, each in steady state.

    Each repeat times one call of ``baseline`` and then one of ``candidate``; each timed call
    directly follows ``warmup`` untimed calls of the same callable, so that neither is timed
    just after the other: right after a 120 ms Python loop of small ops, the same 11 ms op
    measured 0.8 ms slower on its first call and 0.3 ms on its second. The garbage collector
    is off while they run. Medians over the repeats.

    Returns:
        ``(baseline_s, candidate_s, speedup)`` where ``speedup = baseline_s / candidate_s``.
    """
    _check_counts(repeats, warmup)
    tb: list[float] = []
    tc: list[float] = []
    with _gc_paused():
        for _ in range(repeats):
            for fn, acc in ((baseline, tb), (candidate, tc)):
                for _ in range(warmup):
                    fn()
                t0 = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - t0)
    b, c = statistics.median(tb), statistics.median(tc)
    return b, c, b / c if c > 0 else math.inf
