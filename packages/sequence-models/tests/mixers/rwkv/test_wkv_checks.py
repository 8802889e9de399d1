"""Bad input to the whole-sequence WKV forms is a clear error; L = 0 returns the initial
state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from seedbed.sequence_models.mixers.rwkv import chunk_wkv, empty_wkv_state, naive_wkv, recurrent_wkv

FORMS = {"naive": naive_wkv, "chunk": chunk_wkv, "recurrent": recurrent_wkv}


def args(b: int = 2, length: int = 8, d: int = 6) -> list[Any]:
    return [
        torch.rand(d) + 0.1,
        torch.randn(d),
        torch.randn(b, length, d),
        torch.randn(b, length, d),
    ]


def swap(i: int, t: Any) -> Callable[[], list[Any]]:
    def make() -> list[Any]:
        a = args()
        a[i] = t
        return a

    return make


BAD = {
    "w-shape": (swap(0, torch.rand(5)), ValueError, "w must have shape"),
    "u-2d": (swap(1, torch.randn(1, 6)), ValueError, "u must have shape"),
    "k-2d": (swap(2, torch.randn(8, 6)), ValueError, "k must be"),
    "v-shorter": (swap(3, torch.randn(2, 7, 6)), ValueError, "v must have shape"),
    "v-width": (swap(3, torch.randn(2, 8, 5)), ValueError, "v must have shape"),
    "int-v": (swap(3, torch.ones(2, 8, 6, dtype=torch.long)), TypeError, "floating"),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_clear_error(form: str, case: str) -> None:
    make, err, match = BAD[case]
    with pytest.raises(err, match=match):
        FORMS[form](*make())


@pytest.mark.parametrize("form", FORMS)
def test_bad_initial_state_is_a_clear_error(form: str) -> None:
    with pytest.raises(ValueError, match="initial_state must have shape"):
        FORMS[form](*args(), initial_state=torch.zeros(2, 2, 6))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("given", [True, False], ids=["given", "empty"])
def test_empty_sequence_returns_the_initial_state(form: str, given: bool) -> None:
    s0 = torch.randn(2, 3, 6) if given else None
    o, s = FORMS[form](*args(length=0), initial_state=s0, output_final_state=True)
    assert o.shape == (2, 0, 6)
    assert s is not None
    assert torch.equal(s, s0 if s0 is not None else empty_wkv_state(2, 6))
