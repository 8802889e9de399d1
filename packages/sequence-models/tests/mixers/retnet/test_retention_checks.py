"""Bad input to the whole-sequence retention forms is a clear error; L = 0 returns the
initial state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from seedbed.sequence_models.mixers.retnet import (
    chunk_retention,
    naive_retention,
    recurrent_retention,
)

FORMS = {"naive": naive_retention, "chunk": chunk_retention, "recurrent": recurrent_retention}


def args(b: int = 2, length: int = 8, h: int = 3, dk: int = 4, dv: int = 5) -> list[Any]:
    return [
        torch.randn(b, length, h, dk),
        torch.randn(b, length, h, dk),
        torch.randn(b, length, h, dv),
    ]


def swap(i: int, t: Any) -> Callable[[], list[Any]]:
    def make() -> list[Any]:
        a = args()
        a[i] = t
        return a

    return make


BAD = {
    "q-3d": (swap(0, torch.randn(2, 8, 3)), ValueError, "q must be"),
    "v-3d": (swap(2, torch.randn(2, 8, 5)), ValueError, "v must be"),
    "k-shorter": (swap(1, torch.randn(2, 7, 3, 4)), ValueError, "k must have shape"),
    "k-heads": (swap(1, torch.randn(2, 8, 2, 4)), ValueError, "k must have shape"),
    "v-batch": (swap(2, torch.randn(1, 8, 3, 5)), ValueError, "v must have shape"),
    "int-k": (swap(1, torch.ones(2, 8, 3, 4, dtype=torch.long)), TypeError, "floating"),
    "list-q": (swap(0, [[1.0]]), TypeError, "q must be a floating tensor"),
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
        FORMS[form](*args(), initial_state=torch.zeros(2, 3, 5, 4))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("given", [True, False], ids=["given", "zeros"])
def test_empty_sequence_returns_the_initial_state(form: str, given: bool) -> None:
    s0 = torch.randn(2, 3, 4, 5) if given else None
    o, s = FORMS[form](*args(length=0), initial_state=s0, output_final_state=True)
    assert o.shape == (2, 0, 3, 5)
    assert s is not None
    assert torch.equal(s, s0 if s0 is not None else torch.zeros(2, 3, 4, 5))
