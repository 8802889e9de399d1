"""Bad input to the whole-sequence mixer ops (every form of each) is a clear error; L = 0 returns the initial
state (or an empty output). One table per op family: the arguments of a good call, and the
cases that replace one of them."""

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
from seedbed.sequence_models.mixers.mamba import (
    chunk_selective_scan,
    fused_scan_available,
    fused_selective_scan,
    naive_selective_scan,
    recurrent_selective_scan,
)
from seedbed.sequence_models.mixers.mamba2 import chunk_ssd, naive_ssd, recurrent_ssd
from seedbed.sequence_models.mixers.retnet import (
    chunk_retention,
    naive_retention,
    recurrent_retention,
)
from seedbed.sequence_models.mixers.rwkv import chunk_wkv, empty_wkv_state, naive_wkv, recurrent_wkv

LONG = torch.long


def retention_args(length: int = 8) -> list[Any]:
    """q, k (B=2, L, H=3, D_k=4), v (2, L, 3, D_v=5)."""
    return [
        torch.randn(2, length, 3, 4),
        torch.randn(2, length, 3, 4),
        torch.randn(2, length, 3, 5),
    ]


def wkv_args(length: int = 8) -> list[Any]:
    """w, u (D=6,), k, v (B=2, L, 6)."""
    return [
        torch.rand(6) + 0.1,
        torch.randn(6),
        torch.randn(2, length, 6),
        torch.randn(2, length, 6),
    ]


def scan_args(length: int = 10) -> list[Any]:
    """u, delta (B=2, L, E=8), A (8, N=3), B, C (2, L, 3)."""
    return [torch.randn(2, length, 8), torch.rand(2, length, 8), -torch.rand(8, 3),
            torch.randn(2, length, 3), torch.randn(2, length, 3)]  # fmt: skip


SCANS: dict[str, Callable[..., Any]] = {
    "naive": naive_selective_scan,
    "chunk": chunk_selective_scan,
    "recurrent": recurrent_selective_scan,
    **({"fused": fused_selective_scan} if fused_scan_available() else {}),
}


def ssd_args(length: int = 8) -> list[Any]:
    """x (B=2, L, H=4, P=3), dt (2, L, 4), A (4,), B, C (2, L, G=2, N=5)."""
    return [torch.randn(2, length, 4, 3), torch.rand(2, length, 4), -torch.rand(4),
            torch.randn(2, length, 2, 5), torch.randn(2, length, 2, 5)]  # fmt: skip


def conv_args(length: int = 8) -> list[Any]:
    """u (B=2, C=3, L), k (3, T + L) with T = 4, bias (3,), history (2, 3, 4)."""
    return [
        torch.randn(2, 3, length),
        torch.randn(3, 4 + length),
        torch.randn(3),
        torch.randn(2, 3, 4),
    ]


# family: (forms, good arguments, {case: (argument index, replacement, error, message)})
FAMILIES: dict[
    str, tuple[dict[str, Callable[..., Any]], Callable[..., list[Any]], dict[str, Any]]
] = {
    "retention": (
        {"naive": naive_retention, "chunk": chunk_retention, "recurrent": recurrent_retention},
        retention_args,
        {
            "q-3d": (0, torch.randn(2, 8, 3), ValueError, "q must be"),
            "v-3d": (2, torch.randn(2, 8, 5), ValueError, "v must be"),
            "k-shorter": (1, torch.randn(2, 7, 3, 4), ValueError, "k must have shape"),
            "k-heads": (1, torch.randn(2, 8, 2, 4), ValueError, "k must have shape"),
            "v-batch": (2, torch.randn(1, 8, 3, 5), ValueError, "v must have shape"),
            "int-k": (1, torch.ones(2, 8, 3, 4, dtype=LONG), TypeError, "floating"),
            "list-q": (0, [[1.0]], TypeError, "q must be a floating tensor"),
        },
    ),
    "wkv": (
        {"naive": naive_wkv, "chunk": chunk_wkv, "recurrent": recurrent_wkv},
        wkv_args,
        {
            "w-shape": (0, torch.rand(5), ValueError, "w must have shape"),
            "u-2d": (1, torch.randn(1, 6), ValueError, "u must have shape"),
            "k-2d": (2, torch.randn(8, 6), ValueError, "k must be"),
            "v-shorter": (3, torch.randn(2, 7, 6), ValueError, "v must have shape"),
            "v-width": (3, torch.randn(2, 8, 5), ValueError, "v must have shape"),
            "int-v": (3, torch.ones(2, 8, 6, dtype=LONG), TypeError, "floating"),
        },
    ),
    "scan": (
        SCANS,
        scan_args,
        {
            "u-2d": (0, torch.randn(10, 8), ValueError, r"u must be \(B, L, E\)"),
            "delta-shorter": (
                1,
                torch.rand(2, 9, 8),
                ValueError,
                r"delta must have shape \(2, 10, 8\), got \(2, 9, 8\)",
            ),
            "A-channels": (2, -torch.rand(4, 3), ValueError, r"A must be \(E=8, N\)"),
            "B-shorter": (3, torch.randn(2, 9, 3), ValueError, r"B must have shape \(2, 10, 3\)"),
            "C-states": (4, torch.randn(2, 10, 2), ValueError, r"C must have shape \(2, 10, 3\)"),
            "int-B": (
                3,
                torch.ones(2, 10, 3, dtype=LONG),
                TypeError,
                "B must be a floating tensor",
            ),
        },
    ),
    "ssd": (
        {"naive": naive_ssd, "chunk": chunk_ssd, "recurrent": recurrent_ssd},
        ssd_args,
        {
            "x-3d": (0, torch.randn(2, 8, 4), ValueError, "x must be"),
            "dt-shape": (1, torch.rand(2, 8, 3), ValueError, "dt must have shape"),
            "A-shape": (2, -torch.rand(3), ValueError, "A must have shape"),
            "groups-not-dividing-heads": (3, torch.randn(2, 8, 3, 5), ValueError, "divisible by G"),
            "C-shape": (4, torch.randn(2, 8, 2, 6), ValueError, "C must have shape"),
            "int-x": (0, torch.ones(2, 8, 4, 3, dtype=LONG), TypeError, "floating"),
        },
    ),
    "conv": (
        {"direct": direct_causal_conv, "fft": fft_causal_conv, "recurrent": recurrent_causal_conv},
        conv_args,
        {
            "u-2d": (0, torch.randn(3, 8), ValueError, "u must be"),
            "k-too-short": (
                1,
                torch.randn(3, 11),
                ValueError,
                r"k must be \(C=3, >= T \+ L = 12\)",
            ),
            "k-channels": (1, torch.randn(2, 12), ValueError, "k must be"),
            "bias-shape": (2, torch.randn(4), ValueError, "bias must have shape"),
            "history-batch": (3, torch.randn(1, 3, 4), ValueError, "history must be"),
            "int-u": (0, torch.ones(2, 3, 8, dtype=LONG), TypeError, "floating"),
        },
    ),
}
CASES = [
    (fam, form, case) for fam, (forms, _, bad) in FAMILIES.items() for form in forms for case in bad
]


@pytest.mark.parametrize(("family", "form", "case"), CASES, ids=[f"{f}-{c}" for _, f, c in CASES])
def test_bad_input_is_a_clear_error(family: str, form: str, case: str) -> None:
    forms, good, bad = FAMILIES[family]
    index, value, err, match = bad[case]
    args = good()
    args[index] = value
    with pytest.raises(err, match=match):
        forms[form](*args)


# a wrong-shaped initial state (or history) for each stateful form
BAD_STATES = [
    *((f, retention_args(), torch.zeros(2, 3, 5, 4)) for f in FAMILIES["retention"][0].values()),
    *((f, wkv_args(), torch.zeros(2, 2, 6)) for f in FAMILIES["wkv"][0].values()),
    *((f, scan_args(), torch.zeros(1, 8, 3)) for f in SCANS.values()),
    *((f, ssd_args(), torch.zeros(2, 4, 3, 6)) for f in FAMILIES["ssd"][0].values()),
]


@pytest.mark.parametrize(
    ("fn", "args", "state"), BAD_STATES, ids=[f.__name__ for f, _, _ in BAD_STATES]
)
def test_bad_initial_state_is_a_clear_error(
    fn: Callable[..., Any], args: list[Any], state: torch.Tensor
) -> None:
    with pytest.raises(ValueError, match="initial_state must have shape"):
        fn(*args, initial_state=state)


@pytest.mark.parametrize("form", FAMILIES["retention"][0])
@pytest.mark.parametrize("given", [True, False], ids=["given", "zeros"])
def test_retention_at_zero_length_returns_the_initial_state(form: str, given: bool) -> None:
    s0 = torch.randn(2, 3, 4, 5) if given else None
    o, s = FAMILIES["retention"][0][form](
        *retention_args(0), initial_state=s0, output_final_state=True
    )
    assert o.shape == (2, 0, 3, 5)
    assert s is not None
    assert torch.equal(s, s0 if s0 is not None else torch.zeros(2, 3, 4, 5))


@pytest.mark.parametrize("form", FAMILIES["wkv"][0])
@pytest.mark.parametrize("given", [True, False], ids=["given", "empty"])
def test_wkv_at_zero_length_returns_the_initial_state(form: str, given: bool) -> None:
    s0 = torch.randn(2, 3, 6) if given else None
    o, s = FAMILIES["wkv"][0][form](*wkv_args(0), initial_state=s0, output_final_state=True)
    assert o.shape == (2, 0, 6)
    assert s is not None
    assert torch.equal(s, s0 if s0 is not None else empty_wkv_state(2, 6))


@pytest.mark.parametrize("form", SCANS)
@pytest.mark.parametrize("given", [True, False], ids=["given", "zeros"])
def test_scan_at_zero_length_returns_the_initial_state(form: str, given: bool) -> None:
    s0 = torch.randn(2, 8, 3) if given else None
    y, s = SCANS[form](*scan_args(0), initial_state=s0, output_final_state=True)
    assert y.shape == (2, 0, 8)
    assert s is not None
    assert torch.equal(s, s0 if s0 is not None else torch.zeros(2, 8, 3))


@pytest.mark.parametrize("form", FAMILIES["ssd"][0])
@pytest.mark.parametrize("given", [True, False], ids=["given", "zeros"])
def test_ssd_at_zero_length_returns_the_initial_state(form: str, given: bool) -> None:
    h0 = torch.randn(2, 4, 3, 5) if given else None
    y, h = FAMILIES["ssd"][0][form](*ssd_args(0), initial_state=h0, output_final_state=True)
    assert y.shape == (2, 0, 4, 3)
    assert h is not None
    assert torch.equal(h, h0 if h0 is not None else torch.zeros(2, 4, 3, 5))


@pytest.mark.parametrize("form", FAMILIES["conv"][0])
def test_conv_at_zero_length_gives_an_empty_output(form: str) -> None:
    assert FAMILIES["conv"][0][form](*conv_args(0)).shape == (2, 3, 0)


@pytest.mark.parametrize("form", FAMILIES["conv"][0])
def test_conv_accepts_a_longer_kernel(form: str) -> None:
    u, k, bias, history = conv_args()
    longer = torch.cat([k, torch.randn(3, 5)], dim=1)  # taps past T + L are never reached
    fn = FAMILIES["conv"][0][form]
    assert torch.allclose(fn(u, longer, bias, history), fn(u, k, bias, history))
