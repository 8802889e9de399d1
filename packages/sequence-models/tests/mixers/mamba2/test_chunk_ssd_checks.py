"""Bad input to the chunked SSD is a clear error; L = 0 returns the initial state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from seedbed.sequence_models.mixers.mamba2 import chunk_ssd


def args(b: int = 2, length: int = 8, h: int = 4, p: int = 3, g: int = 2, n: int = 5) -> list[Any]:
    return [torch.randn(b, length, h, p), torch.rand(b, length, h), -torch.rand(h),
            torch.randn(b, length, g, n), torch.randn(b, length, g, n)]  # fmt: skip


def swap(i: int, t: Any) -> Callable[[], list[Any]]:
    def make() -> list[Any]:
        a = args()
        a[i] = t
        return a

    return make


BAD = {
    "x-3d": (swap(0, torch.randn(2, 8, 4)), ValueError, "x must be"),
    "dt-shape": (swap(1, torch.rand(2, 8, 3)), ValueError, "dt must have shape"),
    "A-shape": (swap(2, -torch.rand(3)), ValueError, "A must have shape"),
    "groups-not-dividing-heads": (
        lambda: [*args()[:3], torch.randn(2, 8, 3, 5), torch.randn(2, 8, 3, 5)],
        ValueError,
        "divisible by G",
    ),
    "C-shape": (swap(4, torch.randn(2, 8, 2, 6)), ValueError, "C must have shape"),
    "int-x": (swap(0, torch.ones(2, 8, 4, 3, dtype=torch.long)), TypeError, "floating"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_clear_error(case: str) -> None:
    make, err, match = BAD[case]
    with pytest.raises(err, match=match):
        chunk_ssd(*make())


def test_bad_initial_state_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="initial_state must have shape"):
        chunk_ssd(*args(), torch.zeros(2, 4, 3, 6))


def test_empty_sequence_returns_the_initial_state() -> None:
    h0 = torch.randn(2, 4, 3, 5)
    y, h = chunk_ssd(*args(length=0), h0, True)
    assert y.shape == (2, 0, 4, 3)
    assert h is not None
    assert torch.equal(h, h0)
