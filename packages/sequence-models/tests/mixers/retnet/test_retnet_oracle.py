"""Retention core against flash-linear-attention's ``fla.ops.retention.naive.naive_retention``
(pure PyTorch; importable on CPU when triton is)."""

from __future__ import annotations

import pytest
import torch

from seedbed.sequence_models.mixers.retnet import (
    chunk_retention,
    naive_retention,
    recurrent_retention,
)

pytestmark = pytest.mark.oracle


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("b", "length", "h", "dk", "dv"), [(2, 63, 4, 16, 32), (1, 127, 8, 8, 8)])
def test_retention_core_matches_fla_naive(b: int, length: int, h: int, dk: int, dv: int) -> None:
    fla_naive = pytest.importorskip("fla.ops.retention.naive")
    g = torch.Generator().manual_seed(length)
    q, k = torch.randn(b, length, h, dk, generator=g), torch.randn(b, length, h, dk, generator=g)
    v = torch.randn(b, length, h, dv, generator=g)
    # fla's naive op takes (B, H, L, D)
    ref = fla_naive.naive_retention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    ).transpose(1, 2)
    assert rel_err(naive_retention(q, k, v)[0], ref) < 1e-5
    assert rel_err(chunk_retention(q, k, v, chunk_size=16)[0], ref) < 1e-5
    assert rel_err(recurrent_retention(q, k, v)[0], ref) < 1e-5
