"""Benchmarks that sequence-models registers under ``seedbed.benchmarks``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seedbed.sequence_models.genbench import (
    continuous_batching_vs_sequential,
    generate_vs_transformers,
    kv_cache_vs_no_cache,
    speculative_vs_plain,
)
from seedbed.sequence_models.mixer_benchmarks import (
    bench_chunked_vs_recurrent,
    bench_mixer_throughput,
    bench_mqar,
)

__all__ = [
    "BENCHMARKS",
    "bench_chunked_vs_recurrent",
    "bench_mixer_throughput",
    "bench_mqar",
    "continuous_batching_vs_sequential",
    "generate_vs_transformers",
    "kv_cache_vs_no_cache",
    "speculative_vs_plain",
]


BENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [
    bench_chunked_vs_recurrent,
    bench_mixer_throughput,
    bench_mqar,
    # Qwen2 generation and serving (issue 6)
    generate_vs_transformers,
    kv_cache_vs_no_cache,
    continuous_batching_vs_sequential,
    speculative_vs_plain,
]
