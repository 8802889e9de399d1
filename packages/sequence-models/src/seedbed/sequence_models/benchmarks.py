"""Benchmarks that sequence-models registers under ``seedbed.benchmarks``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seedbed.sequence_models.mixer_benchmarks import (
    bench_chunked_vs_recurrent,
    bench_mixer_throughput,
    bench_mqar,
)

__all__ = ["BENCHMARKS", "bench_chunked_vs_recurrent", "bench_mixer_throughput", "bench_mqar"]


BENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [
    bench_chunked_vs_recurrent,
    bench_mixer_throughput,
    bench_mqar,
]
