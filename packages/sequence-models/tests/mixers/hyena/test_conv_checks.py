"""Bad input to the whole-sequence long-convolution forms is a clear error; L = 0 gives an
empty output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from seedbed.sequence_models.mixers.hyena import (
    direct_causal_conv,
    fft_causal_conv,
    recurrent_causal_conv,
)

FORMS = {"direct": direct_causal_conv, "fft": fft_causal_conv, "recurrent": recurrent_causal_conv}


def args(b: int = 2, c: int = 3, length: int = 8, t: int = 4) -> list[Any]:
    """u (B, C, L), k (C, T + L), bias (C,), history (B, C, T)."""
    return [
        torch.randn(b, c, length),
        torch.randn(c, t + length),
        torch.randn(c),
        torch.randn(b, c, t),
    ]


def swap(i: int, t: Any) -> Callable[[], list[Any]]:
    def make() -> list[Any]:
        a = args()
        a[i] = t
        return a

    return make


BAD = {
    "u-2d": (swap(0, torch.randn(3, 8)), ValueError, "u must be"),
    "k-too-short": (swap(1, torch.randn(3, 11)), ValueError, r"k must be \(C=3, >= T \+ L = 12\)"),
    "k-channels": (swap(1, torch.randn(2, 12)), ValueError, "k must be"),
    "bias-shape": (swap(2, torch.randn(4)), ValueError, "bias must have shape"),
    "history-batch": (swap(3, torch.randn(1, 3, 4)), ValueError, "history must be"),
    "int-u": (swap(0, torch.ones(2, 3, 8, dtype=torch.long)), TypeError, "floating"),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_clear_error(form: str, case: str) -> None:
    make, err, match = BAD[case]
    with pytest.raises(err, match=match):
        FORMS[form](*make())


@pytest.mark.parametrize("form", FORMS)
def test_longer_kernel_is_accepted(form: str) -> None:
    u, k, bias, history = args()
    longer = torch.cat([k, torch.randn(3, 5)], dim=1)  # taps past T + L are never reached
    assert torch.allclose(FORMS[form](u, longer, bias, history), FORMS[form](u, k, bias, history))


@pytest.mark.parametrize("form", FORMS)
def test_empty_sequence_gives_an_empty_output(form: str) -> None:
    u, k, bias, history = args(length=0)
    assert FORMS[form](u, k, bias, history).shape == (2, 3, 0)
