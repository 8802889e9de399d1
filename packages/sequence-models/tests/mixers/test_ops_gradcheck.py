"""``gradcheck`` in float64 of every chunked form at small sizes (uneven chunks, carried state)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from seedbed.sequence_models.mixers.hyena import fft_causal_conv
from seedbed.sequence_models.mixers.mamba import chunk_selective_scan
from seedbed.sequence_models.mixers.mamba2 import chunk_ssd
from seedbed.sequence_models.mixers.retnet import chunk_retention
from seedbed.sequence_models.mixers.rwkv import chunk_wkv, recurrent_wkv

F64 = torch.float64


def _g() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_gradcheck_chunk_wkv() -> None:
    g = _g()
    b, length, d = 1, 7, 3
    w = (torch.rand(d, generator=g, dtype=F64) + 0.1).requires_grad_()
    u = torch.randn(d, generator=g, dtype=F64).requires_grad_()
    k = torch.randn(b, length, d, generator=g, dtype=F64).requires_grad_()
    v = torch.randn(b, length, d, generator=g, dtype=F64).requires_grad_()
    _, s0 = recurrent_wkv(
        w.detach(),
        u.detach(),
        torch.randn(b, 3, d, dtype=F64),
        torch.randn(b, 3, d, dtype=F64),
        output_final_state=True,
    )
    s0 = s0.clone().requires_grad_()  # type: ignore[union-attr]

    def fn(w, u, k, v, s0):  # type: ignore[no-untyped-def]
        o, s = chunk_wkv(w, u, k, v, s0, True, chunk_size=3)
        # the true sums num * e^max, den * e^max (max is a detached stabiliser)
        return o, s[:, 0] * torch.exp(s[:, 2]), s[:, 1] * torch.exp(s[:, 2])

    assert gradcheck(fn, (w, u, k, v, s0))


def test_gradcheck_chunk_retention() -> None:
    g = _g()
    q, k = (torch.randn(1, 7, 2, 4, generator=g, dtype=F64).requires_grad_() for _ in range(2))
    v = torch.randn(1, 7, 2, 3, generator=g, dtype=F64).requires_grad_()
    s0 = torch.randn(1, 2, 4, 3, generator=g, dtype=F64).requires_grad_()
    assert gradcheck(
        lambda q, k, v, s0: chunk_retention(q, k, v, None, s0, True, chunk_size=3), (q, k, v, s0)
    )


def test_gradcheck_chunk_selective_scan() -> None:
    g = _g()
    b, length, e, n = 1, 7, 3, 2
    u = torch.randn(b, length, e, generator=g, dtype=F64).requires_grad_()
    delta = F.softplus(torch.randn(b, length, e, generator=g, dtype=F64)).requires_grad_()
    A = (-torch.rand(e, n, generator=g, dtype=F64) - 0.5).requires_grad_()
    B = torch.randn(b, length, n, generator=g, dtype=F64).requires_grad_()
    C = torch.randn(b, length, n, generator=g, dtype=F64).requires_grad_()
    s0 = torch.randn(b, e, n, generator=g, dtype=F64).requires_grad_()
    assert gradcheck(
        lambda *a: chunk_selective_scan(*a[:5], a[5], True, chunk_size=3), (u, delta, A, B, C, s0)
    )


def test_gradcheck_chunk_ssd() -> None:
    g = _g()
    b, length, h, p, n = 1, 7, 2, 2, 3
    x = torch.randn(b, length, h, p, generator=g, dtype=F64).requires_grad_()
    dt = F.softplus(torch.randn(b, length, h, generator=g, dtype=F64)).requires_grad_()
    A = (-torch.rand(h, generator=g, dtype=F64) - 0.5).requires_grad_()
    B = torch.randn(b, length, 1, n, generator=g, dtype=F64).requires_grad_()
    C = torch.randn(b, length, 1, n, generator=g, dtype=F64).requires_grad_()
    s0 = torch.randn(b, h, p, n, generator=g, dtype=F64).requires_grad_()
    assert gradcheck(lambda *a: chunk_ssd(*a[:5], a[5], True, chunk_size=3), (x, dt, A, B, C, s0))


@pytest.mark.parametrize("with_history", [False, True], ids=["no-history", "history"])
def test_gradcheck_fft_causal_conv(with_history: bool) -> None:
    g = _g()
    u = torch.randn(2, 3, 7, generator=g, dtype=F64).requires_grad_()
    k = torch.randn(3, 11, generator=g, dtype=F64).requires_grad_()
    bias = torch.randn(3, generator=g, dtype=F64).requires_grad_()
    hist = torch.randn(2, 3, 4, generator=g, dtype=F64).requires_grad_() if with_history else None
    if hist is None:
        assert gradcheck(lambda u, k, b: fft_causal_conv(u, k, b), (u, k, bias))
    else:
        assert gradcheck(lambda u, k, b, h: fft_causal_conv(u, k, b, h), (u, k, bias, hist))
