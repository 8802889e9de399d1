"""Shared by the selective-scan tests: a factory of random scan inputs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

ScanCase = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _make(b: int, length: int, e: int, n: int, dtype: torch.dtype = torch.float32, seed: int = 0,
          decay: float = 8.0) -> ScanCase:  # fmt: skip
    """(u, delta (B, L, E), A (E, N), B, C (B, L, N), initial state (B, E, N)): delta after
    softplus, A in (-decay, 0), so down to exp(-decay delta) per step."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    A = -torch.rand(e, n, generator=g, dtype=dtype) * decay
    return (
        r(b, length, e),
        F.softplus(r(b, length, e)),
        A,
        r(b, length, n),
        r(b, length, n),
        r(b, e, n),
    )


@pytest.fixture
def scan_case() -> Callable[..., ScanCase]:
    """``scan_case(b, length, e, n, dtype=float32, seed=0, decay=8.0)``: see :func:`_make`."""
    return _make
