"""Mamba-2's chunked SSD (``mixers/mamba2/chunk.py``) with strong decay: its decays below
1e-19 are exactly 0 on a CPU (``decay_exp``), and it still matches the recurrent form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seedbed.sequence_models.mixers.mamba2 import chunk_ssd, recurrent_ssd


@pytest.mark.parametrize("a_scale", [1.0, 16.0, 300.0], ids=lambda s: f"A{s:g}")
def test_strong_decay_matches_the_recurrent_form(a_scale: float) -> None:
    """A down to -a_scale per unit of dt: chunk log-decays reach -1e4 (exp 0 or subnormal)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    x, b, c = r(2, 70, 3, 4), r(2, 70, 1, 5), r(2, 70, 1, 5)
    dt = F.softplus(r(2, 70, 3))
    A = -torch.rand(3, generator=g) * a_scale
    h0 = r(2, 3, 4, 5)
    y, h = chunk_ssd(x, dt, A, b, c, h0, True, chunk_size=16)
    y_ref, h_ref = recurrent_ssd(*(t.double() for t in (x, dt, A, b, c, h0)), True)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5 * float(y_ref.abs().max()))
    assert h is not None
    assert h_ref is not None
    torch.testing.assert_close(h.double(), h_ref, rtol=1e-5, atol=1e-5 * float(h_ref.abs().max()))
