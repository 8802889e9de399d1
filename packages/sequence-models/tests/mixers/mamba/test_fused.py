"""The fused CPU selective scan (``mixers/mamba/fused.py``) against the float64 naive form:
outputs, final states and gradients, on odd shapes, on one and several threads; its
autograd by ``gradcheck``; ``MambaBlock``'s use of it and its fallback; bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.autograd import gradcheck

from seedbed.sequence_models import MambaBlock
from seedbed.sequence_models.mixers import _native
from seedbed.sequence_models.mixers.mamba import (
    chunk_selective_scan,
    fused_scan_available,
    fused_selective_scan,
    naive_selective_scan,
)
from seedbed.sequence_models.mixers.mamba import layer as mamba_layer

pytestmark = pytest.mark.skipif(
    not fused_scan_available(), reason="the fused CPU scan does not build here (no C compiler?)"
)
F64 = torch.float64


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(params=[1, 2], ids=lambda t: f"threads{t}")
def threads(request):  # type: ignore[no-untyped-def]
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.mark.parametrize(
    ("b", "length", "e", "n", "chunk"),
    [(2, 63, 40, 5, 7), (1, 127, 33, 16, 64), (3, 1, 16, 3, 4), (2, 64, 48, 8, 64)],
    ids=lambda v: str(v),
)
def test_matches_naive(
    scan_case: Callable[..., Any], b: int, length: int, e: int, n: int, chunk: int, threads: int
) -> None:
    u, delta, A, B, C, s0 = scan_case(b, length, e, n)
    y_ref, h_ref = naive_selective_scan(u.double(), delta.double(), A.double(), B.double(),
                                        C.double(), s0.double(), True)  # fmt: skip
    y, h = fused_selective_scan(u, delta, A, B, C, s0, True, chunk_size=chunk)
    assert y.dtype == torch.float32
    assert h is not None
    assert rel_err(y, y_ref) < 1e-5
    assert rel_err(h, h_ref) < 1e-5
    y0, h0 = fused_selective_scan(u, delta, A, B, C)  # zero start, no final state
    assert h0 is None
    assert rel_err(y0, naive_selective_scan(u.double(), delta.double(), A.double(), B.double(),
                                            C.double())[0]) < 1e-5  # fmt: skip


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_gradcheck(scan_case: Callable[..., Any], chunk: int, threads: int) -> None:
    # E = 40 so that two threads split the channels into two blocks
    args = [t.requires_grad_() for t in scan_case(2, 9, 40 if threads > 1 else 3, 3, F64)]
    assert gradcheck(lambda *a: fused_selective_scan(*a, True, chunk_size=chunk), args)


def test_gradients_match_chunked_form_in_float32(
    scan_case: Callable[..., Any], threads: int
) -> None:
    args = scan_case(2, 100, 64, 16)
    grads = []
    for fn in (fused_selective_scan, chunk_selective_scan):
        leaves = [t.clone().requires_grad_() for t in args]
        y, h = fn(*leaves, True)
        assert h is not None
        (y.square().sum() + (h * 0.3).sum()).backward()
        grads.append([t.grad for t in leaves])
    for g_fused, g_chunk in zip(*grads):
        assert rel_err(g_fused, g_chunk) < 1e-5


def test_only_final_state_used_in_the_loss(scan_case: Callable[..., Any]) -> None:
    leaves = [t.requires_grad_() for t in scan_case(1, 20, 4, 3, F64)]
    assert gradcheck(lambda *a: fused_selective_scan(*a, True)[1], leaves)


def test_strong_decay_stays_finite(scan_case: Callable[..., Any]) -> None:
    u, delta, A, B, C, s0 = scan_case(1, 50, 16, 4)
    y, h = fused_selective_scan(u, delta * 1e4, A, B, C, s0, True)  # exp(delta A) underflows
    assert h is not None
    assert torch.isfinite(y).all()
    assert torch.isfinite(h).all()
    ref, _ = naive_selective_scan(
        u.double(), delta.double() * 1e4, A.double(), B.double(), C.double()
    )
    assert rel_err(y, ref) < 1e-5


@pytest.mark.parametrize("scale", [30.0, 300.0], ids=lambda s: f"delta-x{s:g}")
def test_strong_decay_gradients_match_float64(
    scan_case: Callable[..., Any], scale: float, threads: int
) -> None:
    """Exponents down to -100 and -1000, where exp underflows to subnormals or 0 and small
    gradients times small decays are subnormal (the kernel floors its exponents and flushes
    subnormals): outputs and gradients match the float64 naive form."""
    args = scan_case(2, 40, 8, 4)
    args = (args[0], args[1] * scale, *args[2:])
    leaves = [t.clone().requires_grad_() for t in args]
    y, h = fused_selective_scan(*leaves, True, chunk_size=8)
    assert h is not None
    (y.square().sum() * 1e-6 + h.sum()).backward()
    ref = [t.detach().double().requires_grad_() for t in args]
    y_ref, h_ref = naive_selective_scan(*ref, True)
    assert h_ref is not None
    (y_ref.square().sum() * 1e-6 + h_ref.sum()).backward()
    assert rel_err(y, y_ref) < 1e-5
    scale_g = max(float(r.grad.abs().max()) for r in ref)  # type: ignore[union-attr]
    for t, r in zip(leaves, ref, strict=True):
        assert float((t.grad.double() - r.grad).abs().max()) < 1e-5 * scale_g  # type: ignore[union-attr, operator]


def test_mamba_block_modes_agree_and_train() -> None:
    torch.manual_seed(0)
    auto = MambaBlock(32, d_state=8, chunk_size=16)
    chunk = MambaBlock(32, d_state=8, chunk_size=16, mode="chunk")
    chunk.load_state_dict(auto.state_dict())
    x = torch.randn(2, 45, 32)
    assert auto.mode == "auto"
    y_auto, y_chunk = auto(x), chunk(x)
    assert rel_err(y_auto, y_chunk) < 1e-5
    y_auto.square().mean().backward()
    y_chunk.square().mean().backward()
    for (name, p), q in zip(auto.named_parameters(), chunk.parameters()):
        assert p.grad is not None
        assert q.grad is not None
        assert rel_err(p.grad, q.grad) < 1e-4, name


def test_mamba_block_falls_back_when_the_kernel_cannot_build(
    scan_case: Callable[..., Any], monkeypatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_native, "_loaded", {})
    monkeypatch.setattr(mamba_layer, "_warned_fallback", False)
    monkeypatch.setenv("SEEDBED_NATIVE", "0")
    assert not fused_scan_available()
    torch.manual_seed(0)
    auto, fused = MambaBlock(16, d_state=4), MambaBlock(16, d_state=4, mode="fused")
    ref = MambaBlock(16, d_state=4, mode="chunk")
    ref.load_state_dict(auto.state_dict())
    x = torch.randn(1, 10, 16)
    with pytest.warns(RuntimeWarning, match="SEEDBED_NATIVE=0.*PyTorch chunked scan"):
        y = auto(x)
    assert torch.allclose(y, ref(x))
    with pytest.raises(_native.NativeUnavailable, match="SEEDBED_NATIVE=0"):
        fused(x)
    with pytest.raises(_native.NativeUnavailable):
        fused_selective_scan(*scan_case(1, 4, 2, 2)[:5])
    with pytest.raises(ValueError, match="mode must be one of"):
        MambaBlock(16, mode="fast")
