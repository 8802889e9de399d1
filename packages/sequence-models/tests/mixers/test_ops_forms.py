"""Every mixer's three forms (naive / chunk / recurrent) agree, with carried states.

Odd lengths (63, 127) and chunk sizes that do not divide them; fp32 within 1e-5 relative
(normwise: max |a - b| <= 1e-5 max |b|), final states included; a stream of uneven chunks
that mixes the forms equals the whole sequence.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from seedbed.sequence_models.mixers.hyena import (
    direct_causal_conv,
    fft_causal_conv,
    recurrent_causal_conv,
)
from seedbed.sequence_models.mixers.mamba import (
    chunk_selective_scan,
    naive_selective_scan,
    recurrent_selective_scan,
)
from seedbed.sequence_models.mixers.mamba2 import chunk_ssd, naive_ssd, recurrent_ssd
from seedbed.sequence_models.mixers.retnet import (
    chunk_retention,
    naive_retention,
    recurrent_retention,
)
from seedbed.sequence_models.mixers.rwkv import chunk_wkv, naive_wkv, recurrent_wkv

RTOL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def make_rwkv(
    b: int, length: int, g: torch.Generator, dtype=torch.float32
) -> tuple[tuple[Any, ...], torch.Tensor]:
    d = 8
    w = torch.rand(d, generator=g, dtype=dtype) * 2 + 0.01
    u = torch.randn(d, generator=g, dtype=dtype)
    k = torch.randn(b, length, d, generator=g, dtype=dtype) * 3  # large keys: the max trick matters
    v = torch.randn(b, length, d, generator=g, dtype=dtype)
    _s0, _ = recurrent_wkv(w, u, k[:, :5] * 0.5, v[:, :5], output_final_state=True)
    return (w, u, k, v), _  # type: ignore[return-value]


def make_case(name: str, b: int, length: int, g: torch.Generator, dtype=torch.float32):  # type: ignore[no-untyped-def]
    """Inputs (args tuple) and a non-trivial initial state for op family ``name``."""
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    if name == "rwkv":
        d = 8
        args = (
            torch.rand(d, generator=g, dtype=dtype) * 2 + 0.01,
            r(d),
            r(b, length, d) * 3,
            r(b, length, d),
        )
        _, s0 = recurrent_wkv(args[0], args[1], r(b, 4, d), r(b, 4, d), output_final_state=True)
    elif name == "retnet":
        h, dk, dv = 4, 8, 16
        args = (r(b, length, h, dk), r(b, length, h, dk), r(b, length, h, dv))
        s0 = r(b, h, dk, dv)
    elif name == "mamba":
        e, n = 6, 4
        delta = F.softplus(r(b, length, e))
        args = (
            r(b, length, e),
            delta,
            -torch.rand(e, n, generator=g, dtype=dtype) * 8,
            r(b, length, n),
            r(b, length, n),
        )
        s0 = r(b, e, n)
    elif name == "mamba2":
        h, p, grp, n = 4, 8, 2, 5
        args = (r(b, length, h, p), F.softplus(r(b, length, h)), -torch.rand(h, generator=g, dtype=dtype) * 8,
                r(b, length, grp, n), r(b, length, grp, n))  # fmt: skip
        s0 = r(b, h, p, n)
    else:
        raise ValueError(name)
    return args, s0


OPS: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]] = {
    "rwkv": (naive_wkv, chunk_wkv, recurrent_wkv),
    "retnet": (naive_retention, chunk_retention, recurrent_retention),
    "mamba": (naive_selective_scan, chunk_selective_scan, recurrent_selective_scan),
    "mamba2": (naive_ssd, chunk_ssd, recurrent_ssd),
}
# positional index of the (B, L, ...) tensors in each op's arguments
SEQ_ARGS = {"rwkv": (2, 3), "retnet": (0, 1, 2), "mamba": (0, 1, 3, 4), "mamba2": (0, 1, 3, 4)}
SHAPES = [(2, 63, 16), (1, 127, 50), (2, 64, 64), (3, 1, 8)]


def _call(fn, args, state, chunk_size=None):  # type: ignore[no-untyped-def]
    if fn.__name__.startswith("retention") or fn.__name__.endswith("retention"):
        out = fn(
            *args, None, state, True, **({} if chunk_size is None else {"chunk_size": chunk_size})
        )
    else:
        out = fn(*args, state, True, **({} if chunk_size is None else {"chunk_size": chunk_size}))
    return out


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize(
    ("b", "length", "chunk"), SHAPES, ids=[f"B{b}-L{length}-C{c}" for b, length, c in SHAPES]
)
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "carried-state"])
def test_forms_agree(name: str, b: int, length: int, chunk: int, with_state: bool) -> None:
    g = torch.Generator().manual_seed(length * 7 + b)
    args, s0 = make_case(name, b, length, g)
    state = s0 if with_state else None
    naive, chunked, recurrent = OPS[name]
    o_ref, s_ref = _call(recurrent, args, state)
    o_nv, s_nv = _call(naive, args, state)
    o_ck, s_ck = _call(chunked, args, state, chunk)
    assert o_ref.shape == o_nv.shape == o_ck.shape
    assert rel_err(o_nv, o_ref) < RTOL
    assert rel_err(o_ck, o_ref) < RTOL
    assert rel_err(s_nv, s_ref) < RTOL
    assert rel_err(s_ck, s_ref) < RTOL


@pytest.mark.parametrize("name", list(OPS))
def test_stream_mixing_forms_equals_whole(name: str) -> None:
    g = torch.Generator().manual_seed(1)
    length = 63
    args, _ = make_case(name, 2, length, g)
    naive, chunked, recurrent = OPS[name]
    o_ref, s_ref = _call(recurrent, args, None)
    cuts = [0, 20, 21, 50, length]
    outs, state = [], None
    for i, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        part = list(args)
        for j in SEQ_ARGS[name]:
            part[j] = args[j][:, lo:hi]
        fn = (chunked, naive, recurrent, chunked)[i]
        o, state = _call(fn, tuple(part), state, 7 if fn is chunked else None)
        outs.append(o)
    assert rel_err(torch.cat(outs, dim=1), o_ref) < RTOL
    assert rel_err(state, s_ref) < RTOL


def test_rwkv_state_never_overflows_with_huge_keys() -> None:
    g = torch.Generator().manual_seed(0)
    d, length = 4, 40
    w, u = torch.full((d,), 0.5), torch.zeros(d)
    k = torch.randn(1, length, d, generator=g) * 200  # exp(200) overflows fp32
    v = torch.randn(1, length, d, generator=g)
    o_ref, _ = recurrent_wkv(w.double(), u.double(), k.double(), v.double())
    for fn in (naive_wkv, chunk_wkv, recurrent_wkv):
        o, _ = fn(w, u, k, v)
        assert torch.isfinite(o).all()
        assert rel_err(o.double(), o_ref) < 1e-5


def test_mamba_chunked_scan_strong_decay_is_finite() -> None:
    """delta * A down to -1e4 per step: exp(-cumsum) would overflow, the log-space scan does not."""
    g = torch.Generator().manual_seed(0)
    b, length, e, n = 1, 50, 4, 3
    u = torch.randn(b, length, e, generator=g)
    delta = torch.rand(b, length, e, generator=g) * 100
    A = -torch.rand(e, n, generator=g) * 100 - 1
    B, C = torch.randn(b, length, n, generator=g), torch.randn(b, length, n, generator=g)
    ref, _ = recurrent_selective_scan(
        u.double(), delta.double(), A.double(), B.double(), C.double()
    )
    out, _ = chunk_selective_scan(u, delta, A, B, C, chunk_size=16)
    assert torch.isfinite(out).all()
    assert rel_err(out.double(), ref) < 1e-5
    out2, _ = chunk_ssd(u[..., None], delta, A[:, 0], B[:, :, None], C[:, :, None], chunk_size=16)
    ref2, _ = recurrent_ssd(
        u[..., None].double(),
        delta.double(),
        A[:, 0].double(),
        B[:, :, None].double(),
        C[:, :, None].double(),
    )
    assert torch.isfinite(out2).all()
    assert rel_err(out2.double(), ref2) < 1e-5


@pytest.mark.parametrize("length", [63, 127])
def test_hyena_conv_forms_agree_fp32(length: int) -> None:
    g = torch.Generator().manual_seed(length)
    u = torch.randn(2, 6, length, generator=g)
    k = torch.randn(6, length + 10, generator=g) / length**0.5
    bias = torch.randn(6, generator=g)
    ref = direct_causal_conv(u, k, bias)
    assert rel_err(fft_causal_conv(u, k, bias), ref) < RTOL
    assert rel_err(recurrent_causal_conv(u, k, bias), ref) < RTOL
    # streaming with a history
    hist, new = u[..., :40], u[..., 40:]
    assert rel_err(fft_causal_conv(new, k, bias, history=hist), ref[..., 40:]) < RTOL
    assert rel_err(recurrent_causal_conv(new, k, bias, history=hist), ref[..., 40:]) < RTOL


@pytest.mark.parametrize("length", [63, 127, 1000])
def test_hyena_fft_equals_direct_float64(length: int) -> None:
    """Acceptance: FFT causal convolution == direct causal convolution in float64, 1e-10."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 5, length, generator=g, dtype=torch.float64)
    k = torch.randn(5, length, generator=g, dtype=torch.float64)
    assert rel_err(fft_causal_conv(u, k), direct_causal_conv(u, k)) < 1e-10
