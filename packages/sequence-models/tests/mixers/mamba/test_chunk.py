"""The chunked selective scan (``mixers/mamba/chunk.py``): its custom backward (``gradcheck``
on uneven chunks, gradients against autograd through the recurrent loop, the final-state-only
loss, strong decay, strided inputs), its CPU tuning (blocks of chunks, the choice of
exponential, the carry without subnormal numbers), low precision and a bad chunk size (these
two for the fused kernel too). Shapes, dtypes and L = 0 of every form:
``tests/mixers/test_input_checks.py``."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.autograd import gradcheck

from seedbed.sequence_models.mixers.mamba import chunk as chunk_mod
from seedbed.sequence_models.mixers.mamba import (
    chunk_selective_scan,
    fused_scan_available,
    fused_selective_scan,
    recurrent_selective_scan,
)

F64 = torch.float64


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("chunk", [1, 2, 3, 8], ids=lambda c: f"C{c}")
def test_gradcheck_uneven_chunks(scan_case: Callable[..., Any], chunk: int) -> None:
    leaves = [t.requires_grad_() for t in scan_case(2, 7, 3, 2, F64)]
    assert gradcheck(lambda *a: chunk_selective_scan(*a, True, chunk_size=chunk), leaves)


def test_gradcheck_only_final_state_in_the_loss(scan_case: Callable[..., Any]) -> None:
    leaves = [t.requires_grad_() for t in scan_case(1, 9, 2, 3, F64)]
    assert gradcheck(lambda *a: chunk_selective_scan(*a, True, chunk_size=4)[1], leaves)


@pytest.mark.parametrize(
    ("b", "length", "e", "n", "chunk"),
    # the last three have 127, 65 and 128 chunks: the carry across chunks runs in groups of
    # 8 (with one padding chunk), 5 and 8
    [(2, 63, 5, 4, 8), (1, 127, 16, 16, 32), (3, 10, 4, 2, 64), (1, 127, 3, 2, 1),
     (2, 130, 3, 2, 2), (1, 128, 2, 3, 1)],
    ids=lambda v: str(v),
)  # fmt: skip
def test_outputs_and_gradients_match_autograd_through_the_loop(
    scan_case: Callable[..., Any], b: int, length: int, e: int, n: int, chunk: int
) -> None:
    args = scan_case(b, length, e, n, F64)
    w = torch.randn(b, length, e, dtype=F64, generator=torch.Generator().manual_seed(1))
    outs, grads = [], []
    for fn, kw in ((recurrent_selective_scan, {}), (chunk_selective_scan, {"chunk_size": chunk})):
        leaves = [t.clone().requires_grad_() for t in args]
        y, h = fn(*leaves, True, **kw)
        ((y * w).sum() + (h * 0.3).sum()).backward()
        outs.append((y, h))
        grads.append([t.grad for t in leaves])
    for o_loop, o_chunk in zip(*outs):
        assert rel_err(o_chunk, o_loop) < 1e-12
    for g_loop, g_chunk in zip(*grads):
        assert rel_err(g_chunk, g_loop) < 1e-10


def test_strong_decay_gradients_stay_finite(scan_case: Callable[..., Any]) -> None:
    """delta * A down to -1e4 per step: every decay underflows to 0, never overflows."""
    args = scan_case(1, 50, 4, 3, decay=100.0)
    args = (args[0], args[1] * 100, *args[2:])
    leaves = [t.clone().requires_grad_() for t in args]
    y, h = chunk_selective_scan(*leaves, True, chunk_size=16)
    (y.square().sum() + h.sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)  # type: ignore[arg-type]
    ref = [t.double().requires_grad_() for t in args]
    y, h = recurrent_selective_scan(*ref, True)
    (y.square().sum() + h.sum()).backward()
    # dA underflows to ~0 in both, so errors are measured against the largest gradient
    scale = max(float(r.grad.abs().max()) for r in ref)  # type: ignore[union-attr]
    for t, r in zip(leaves, ref):
        assert float((t.grad.double() - r.grad).abs().max()) < 1e-5 * scale  # type: ignore[union-attr, operator]


@pytest.mark.parametrize("length", [64, 61], ids=lambda v: f"L{v}")
def test_strided_inputs_match_contiguous(scan_case: Callable[..., Any], length: int) -> None:
    """Inputs sliced out of wider tensors (as a block's projections are), A transposed:
    same outputs and gradients as contiguous copies, whether or not C divides L."""
    args = scan_case(2, length, 6, 4, F64)
    wide = [torch.cat([t, torch.randn_like(t)], -1)[..., : t.shape[-1]] for t in args[:2]]
    strided = [*wide, args[2].t().contiguous().t(), *(
        torch.cat([t, torch.randn_like(t)], -1)[..., : t.shape[-1]] for t in args[3:5])]  # fmt: skip
    assert not any(t.is_contiguous() for t in strided)
    results = []
    for inputs in (strided, [t.contiguous() for t in strided]):
        leaves = [t.detach().requires_grad_() for t in inputs]
        y, h = chunk_selective_scan(*leaves, args[5], True, chunk_size=8)
        (y.square().sum() + h.sum()).backward()
        results.append([y, h, *(t.grad for t in leaves)])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_forward_is_bitwise_the_same_in_any_blocks(
    scan_case: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forward sweeps its chunks block by block (cache-sized on a CPU). Blocks split the
    B n = 2 x 9 chunks of independent rows, so every block size, ragged ones included, gives
    the same bits, and the result matches the loop."""
    args = scan_case(2, 70, 5, 3)
    outs = []
    for rows in (1, 4, 7, 18, 100):
        monkeypatch.setattr(chunk_mod, "_block_rows", lambda k, r=rows: r)
        outs.append(chunk_selective_scan(*args, True, chunk_size=8))
    for y, h in outs[1:]:
        assert torch.equal(y, outs[0][0])
        assert torch.equal(h, outs[0][1])  # type: ignore[arg-type]
    y_ref, h_ref = recurrent_selective_scan(*(t.double() for t in args), True)
    assert rel_err(outs[0][0], y_ref) < 1e-5
    assert rel_err(outs[0][1], h_ref) < 1e-5  # type: ignore[arg-type]


def test_block_size_is_a_quarter_of_l2_per_thread(
    scan_case: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    u, delta, A, B, C, _ = scan_case(1, 64, 128, 16)
    k = chunk_mod._Chunks(u, delta, A, B, C, 8)
    monkeypatch.setattr(chunk_mod, "_cpu_l2_bytes", lambda: 2 << 20)
    threads = torch.get_num_threads()
    try:
        for n_threads, rows in ((1, 64), (2, 128)):
            torch.set_num_threads(n_threads)
            assert chunk_mod._block_rows(k) == rows  # 512 KiB of (N, E) fp32 states a thread
    finally:
        torch.set_num_threads(threads)


def test_l2_size_is_read_from_sysfs(tmp_path: Path) -> None:
    for index, (level, size) in enumerate([("1", "48K"), ("1", "64K"), ("2", "2048K")]):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "level").write_text(level + "\n")
        (tmp_path / f"index{index}" / "size").write_text(size + "\n")
    assert chunk_mod._cpu_l2_bytes(tmp_path) == 2 << 20
    (tmp_path / "index2" / "size").write_text("1M\n")
    assert chunk_mod._cpu_l2_bytes.__wrapped__(tmp_path) == 1 << 20
    (tmp_path / "index2" / "size").write_text("odd\n")
    assert chunk_mod._cpu_l2_bytes.__wrapped__(tmp_path) == 1 << 20  # the default
    assert chunk_mod._cpu_l2_bytes.__wrapped__(tmp_path / "missing") == 1 << 20


def test_exponential_is_the_faster_of_exp_and_exp2() -> None:
    pair_exp, pair_exp2 = (torch.exp, 1.0), (torch.exp2, 1 / math.log(2))
    assert chunk_mod._cpu_exp() in (pair_exp, pair_exp2)
    assert chunk_mod._faster_exp(45e-6, 70e-6) == pair_exp  # MKL's exp on an Intel VM
    assert chunk_mod._faster_exp(225e-6, 75e-6) == pair_exp2  # on an AMD one
    assert chunk_mod._faster_exp(60e-6, 70e-6) == pair_exp2  # exp2 unless exp is 1.2x faster


@pytest.mark.parametrize("exp", ["exp", "exp2"])
def test_either_exponential_gives_the_scan(
    scan_case: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, exp: str
) -> None:
    pair = (torch.exp, 1.0) if exp == "exp" else (torch.exp2, 1 / math.log(2))
    monkeypatch.setattr(chunk_mod, "_cpu_exp", lambda: pair)
    leaves = [t.requires_grad_() for t in scan_case(2, 63, 8, 4)]
    y, h = chunk_selective_scan(*leaves, True, chunk_size=8)
    (y.square().sum() + h.sum()).backward()  # type: ignore[union-attr]
    ref = [t.detach().double().requires_grad_() for t in leaves]
    y_ref, h_ref = recurrent_selective_scan(*ref, True)
    (y_ref.square().sum() + h_ref.sum()).backward()  # type: ignore[union-attr]
    assert rel_err(y, y_ref) < 1e-5
    assert rel_err(h, h_ref) < 1e-5  # type: ignore[arg-type]
    for t, r in zip(leaves, ref, strict=True):
        assert rel_err(t.grad, r.grad) < 1e-4  # type: ignore[arg-type]


def test_exponents_are_floored_only_at_steps_that_need_it(
    scan_case: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One token's delta of 50 gives exponents down to -400, whose exp is 0 or subnormal
    (100x slower in MKL's exp, and in products after it). Only that step of that block of
    chunks is clamped at log(sqrt(tiny)); the outputs match the loop in float64 and the
    same scan with no clamping."""
    u, delta, A, B, C, h0 = scan_case(2, 40, 6, 3)  # 2 x 5 chunks of 8; A in (-8, 0)
    delta = delta.clone()
    delta[1, 17] = 50.0  # batch 1, chunk 2, step 1: row 1 * 5 + 2 = 7 of the 10
    k = chunk_mod._Chunks(u, delta, A, B, C, 8)
    assert [blk.low for blk in k.blocks(4)] == [
        (False,) * 8, (False, True) + (False,) * 6, (False,) * 8]  # fmt: skip
    mild = chunk_mod._Chunks(u, delta.clamp(max=3.0), A, B, C, 8)
    assert [blk.low for blk in mild.blocks(4)] == [(False,) * 8] * 3
    y, h = chunk_selective_scan(u, delta, A, B, C, h0, True, chunk_size=8)
    y_ref, h_ref = recurrent_selective_scan(*(t.double() for t in (u, delta, A, B, C, h0)), True)
    assert rel_err(y, y_ref) < 1e-5
    assert rel_err(h, h_ref) < 1e-5  # type: ignore[arg-type]
    never = lambda self, rows: [(False,) * 8] * -(-10 // rows)  # noqa: E731
    monkeypatch.setattr(chunk_mod._Chunks, "low_steps", never)
    y_plain, _ = chunk_selective_scan(u, delta, A, B, C, h0, True, chunk_size=8)
    torch.testing.assert_close(y, y_plain, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_carry_makes_no_subnormal_numbers(reverse: bool) -> None:
    """Chunk decays down to e^-40: their running products over a group underflow, which
    would give subnormal numbers (~30x slower on x86). Below sqrt(tiny) they are set to 0,
    and the carried values still match a float64 carry chunk by chunk."""
    g = torch.Generator().manual_seed(0)
    n = 64  # groups of 6 chunks (with 2 padding chunks)
    v = torch.randn(2, n, 3, 4, generator=g)
    decay = torch.exp(-40 * torch.rand(2, n, 3, 4, generator=g))
    first = torch.randn(2, 3, 4, generator=g)
    scratch = decay.clone()
    out, last = chunk_mod._carry(v, scratch, first, reverse=reverse)
    tiny = torch.finfo(torch.float32).tiny
    for t in (out, last, scratch):
        assert not ((t != 0) & (t.abs() < tiny)).any()
    w, ref = first.double(), torch.empty_like(v, dtype=torch.float64)
    for j in reversed(range(n)) if reverse else range(n):
        ref[:, j] = w
        w = v[:, j].double() + decay[:, j].double() * w
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(last.double(), w, rtol=1e-6, atol=1e-6)


SCANS = [
    pytest.param(chunk_selective_scan, id="chunk"),
    pytest.param(fused_selective_scan, id="fused", marks=pytest.mark.skipif(
        not fused_scan_available(), reason="the fused CPU scan does not build here")),
]  # fmt: skip


@pytest.mark.parametrize("scan", SCANS)
def test_bad_chunk_size_is_a_clear_error(
    scan_case: Callable[..., Any], scan: Callable[..., Any]
) -> None:
    """(Shapes, dtypes and L = 0 of every form: tests/mixers/test_input_checks.py.)"""
    u, delta, A, B, C, _ = scan_case(2, 10, 8, 3)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        scan(u, delta, A, B, C, chunk_size=0)


@pytest.mark.parametrize("scan", SCANS)
def test_low_precision_inputs_are_computed_in_float32(
    scan_case: Callable[..., Any], scan: Callable[..., Any]
) -> None:
    u, delta, A, B, C, _ = scan_case(1, 30, 8, 4)
    y, h = scan(u.bfloat16(), delta, A, B, C, None, True, chunk_size=8)
    assert y.dtype == torch.bfloat16
    assert h is not None
    assert h.dtype == torch.float32
    ref, _ = recurrent_selective_scan(u.bfloat16().float(), delta, A, B, C)
    assert rel_err(y.float(), ref) < 1e-2  # bf16 rounding of the output only
