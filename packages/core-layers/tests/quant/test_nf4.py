"""NF4 quantization: round trip, layout, storage, bad input; NF4Linear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seedbed.core_layers.quant import NF4_CODE, NF4Linear, dynamic_map, quantize_nf4


def test_levels_are_sorted_and_symmetric_ends() -> None:
    code = torch.tensor(NF4_CODE)
    assert code.numel() == 16
    assert torch.all(code[1:] > code[:-1])
    assert (code[0], code[7], code[-1]) == (-1, 0, 1)
    dyn = dynamic_map()
    assert dyn.numel() == 256
    assert torch.all(dyn[1:] > dyn[:-1])
    assert dyn[-1] == 1


@pytest.mark.parametrize("double_quant", [False, True], ids=["single", "double"])
def test_round_trip_error_and_nearest_level(double_quant: bool) -> None:
    w32 = torch.randn(96, 128, generator=torch.Generator().manual_seed(0))
    w = w32.double()
    q = quantize_nf4(w32, 64, double_quant)
    deq = q.dequantize().double()
    assert deq.shape == w.shape
    assert q.dequantize().dtype == torch.float32
    # every value went to the nearest level of its block (checked in float64)
    absmax = w.reshape(-1, 64).abs().amax(1, keepdim=True)
    levels = torch.tensor(NF4_CODE, dtype=torch.float64)
    nearest = (w.reshape(-1, 64, 1) / absmax[..., None] - levels).abs().argmin(-1)
    assert (nearest.reshape(-1) == q.codes()).float().mean() > 0.999  # fp32 ties aside
    # error bounded by half the largest level gap times the block scale, plus, with double
    # quantization, the error of the 8-bit scale itself (|level| <= 1)
    bound = 0.5 * (levels[1:] - levels[:-1]).max() * absmax
    scale_err = (q.block_absmax().double()[:, None] - absmax).abs()
    if not double_quant:
        assert torch.all(scale_err == 0)
    assert torch.all((deq - w).reshape(-1, 64).abs() <= bound + scale_err + 1e-6)
    rel = (deq - w).norm() / w.norm()
    assert rel < 0.12


def test_packing_high_nibble_first() -> None:
    w = torch.zeros(64)
    w[0], w[1] = -1.0, 1.0  # levels 0 and 15
    q = quantize_nf4(w, 64, double_quant=False)
    assert q.packed[0].item() == (0 << 4) | 15
    assert q.packed[1:].eq((7 << 4) | 7).all()  # zeros -> level 7


def test_storage_is_4_127_bits_with_double_quant() -> None:
    w = torch.randn(1024, 4096)
    q = quantize_nf4(w, 64, double_quant=True)
    expected = (w.numel() // 2 + w.numel() // 64 + 4 * (w.numel() // 64 // 256) + 4) * 8 / w.numel()
    assert q.bits_per_param == pytest.approx(expected)
    assert q.bits_per_param == pytest.approx(4.127, abs=5e-4)
    assert quantize_nf4(w, 64, double_quant=False).bits_per_param == pytest.approx(4.5)


def test_padding_and_bad_input() -> None:
    w = torch.randn(10, 13)  # 130 elements, not a multiple of 64
    with pytest.raises(ValueError, match="multiple of block_size"):
        quantize_nf4(w)
    q = quantize_nf4(w, pad=True)
    assert q.dequantize().shape == w.shape
    assert (q.dequantize() - w).abs().max() < 0.2 * w.abs().max()
    with pytest.raises(ValueError, match="even int"):
        quantize_nf4(torch.randn(64), block_size=63)
    with pytest.raises(TypeError):
        quantize_nf4(torch.arange(64))
    with pytest.raises(ValueError, match="empty"):
        quantize_nf4(torch.randn(0))


def test_zero_blocks_dequantize_to_zero() -> None:
    w = torch.zeros(2, 64)
    w[1] = torch.randn(64)
    for dq in (False, True):
        out = quantize_nf4(w, double_quant=dq).dequantize()
        assert torch.all(out[0] == 0)


@pytest.mark.parametrize("bias", [True, False])
def test_nf4_linear_from_linear(bias: bool, tmp_path) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(64, 40, bias=bias)
    q = NF4Linear.from_linear(lin)
    x = torch.randn(3, 5, 64)
    w_hat = quantize_nf4(lin.weight.detach()).dequantize()
    torch.testing.assert_close(q(x), nn.functional.linear(x, w_hat, lin.bias))
    assert not any(p.requires_grad for p in q.parameters())
    # dtype casts do not touch the stored scales (integer buffers)
    before = {k: v.clone() for k, v in q.state_dict().items() if "weight_" in k}
    q.to(torch.bfloat16)
    for k, v in q.state_dict().items():
        if "weight_" in k:
            assert torch.equal(v, before[k])
    assert q(x.bfloat16()).dtype == torch.bfloat16
    # state dict round trip through safetensors
    safetensors = pytest.importorskip("safetensors.torch")
    q.float()
    path = tmp_path / "nf4.safetensors"
    safetensors.save_file(q.state_dict(), str(path))
    fresh = NF4Linear(64, 40, bias=bias)
    fresh.load_state_dict(safetensors.load_file(str(path)))
    torch.testing.assert_close(fresh(x), q(x))
    with pytest.raises(TypeError):
        NF4Linear.from_linear(nn.Conv1d(3, 3, 1))  # type: ignore[arg-type]
