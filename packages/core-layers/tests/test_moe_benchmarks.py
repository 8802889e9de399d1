"""MoE benchmark scripts: registration, FLOP counting of grouped_mm, CLI output."""

from __future__ import annotations

import pytest
import torch

from seedbed.core_layers import moe_benchmarks as mb
from seedbed.core_layers.benchmarks import BENCHMARKS
from seedbed.core_layers.moe import grouped_mm_supported


def test_registered() -> None:
    for fn in (mb.bench_moe_dispatch, mb.bench_benchmark_moe, mb.bench_moe_vs_dense):
        assert fn in BENCHMARKS


@pytest.mark.skipif(
    not grouped_mm_supported(torch.device("cpu"), torch.float32), reason="no CPU grouped_mm"
)
def test_grouped_mm_flops_are_counted() -> None:
    a, b = torch.randn(40, 16), torch.randn(4, 16, 32)
    offs = torch.tensor([10, 20, 30, 40], dtype=torch.int32)
    flops = mb.forward_flops(lambda: torch.nn.functional.grouped_mm(a, b, offs=offs))
    assert flops == 2 * 40 * 16 * 32


def test_flops_and_params_are_measured() -> None:
    dense = mb.SwiGLU(16, 32)
    assert mb.count_params(dense) == 3 * 16 * 32
    x = torch.randn(10, 16)
    assert mb.forward_flops(lambda: dense(x)) == 3 * 2 * 10 * 16 * 32


@pytest.mark.parametrize("router", ["hash", "switch"])
def test_benchmark_moe_cli_prints_side_by_side(router: str, capsys) -> None:
    assert mb.benchmark_moe_main(["--router", router]) == 0
    out = capsys.readouterr().out
    assert f"--router {router}" in out
    for row in ("parameters (counted)", "fwd FLOPs (measured)", "fwd+bwd time (s)"):
        assert row in out


def test_moe_vs_dense_reports_counts() -> None:
    res = mb.run_moe_vs_dense("hash", data=b"def f(x):\n    return x + 1\n" * 40)
    assert res["moe_params"] > res["dense_params"]
    # top-2 over experts of the dense FFN's size: about twice the FFN FLOPs, never E times
    assert (
        res["dense_fwd_flops"] < res["moe_fwd_flops"] < res["num_experts"] * res["dense_fwd_flops"]
    )
    with pytest.raises(ValueError, match="router must be one of"):
        mb.run_moe_vs_dense("random")
    with pytest.raises(SystemExit):
        mb.moe_vs_dense_main(["--router", "random"])
