"""The benchmarks time equal computations, and are registered."""

from __future__ import annotations

import torch

from seedbed.sequence_models.benchmarks import BENCHMARKS
from seedbed.sequence_models.mixer_benchmarks import (
    _op_cases,
    bench_chunked_vs_recurrent,
    bench_mixer_throughput,
    bench_mqar,
)
from seedbed.sequence_models.mixers.mamba import fused_scan_available


def test_registered() -> None:
    for fn in (bench_chunked_vs_recurrent, bench_mixer_throughput, bench_mqar):
        assert fn in BENCHMARKS


def test_chunked_and_recurrent_cases_compute_the_same_thing() -> None:
    cases = _op_cases(100, torch.Generator().manual_seed(0))
    assert set(cases) >= {"rwkv", "retnet", "mamba", "mamba2", "hyena"}
    assert ("mamba_fused" in cases) == fused_scan_available()
    with torch.no_grad():
        for name, (rec, chunk, _) in cases.items():
            a, b = rec(), chunk()
            a = a[0] if isinstance(a, tuple) else a
            b = b[0] if isinstance(b, tuple) else b
            assert (a - b).abs().max() <= 1e-4 * b.abs().max(), name
