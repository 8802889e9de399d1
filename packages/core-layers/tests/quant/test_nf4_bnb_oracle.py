"""Oracle: quantize_nf4 == bitsandbytes.functional.quantize_4bit(..., quant_type="nf4") on CPU.

bitsandbytes returns the packed codes as a (numel/2, 1) uint8 tensor (first element in the high
nibble) and a QuantState. Without compress_statistics, ``state.absmax`` is the fp32 absmax per
block of 64; with it, ``state.absmax`` is the 8-bit code of (absmax - offset), ``state.offset``
the fp32 mean and ``state.state2.absmax`` the fp32 scale per 256 codes. Each of these is
compared with the corresponding buffer of our NF4Tensor, bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from seedbed.core_layers.quant import dynamic_map, quantize_nf4

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def bnbf():
    return pytest.importorskip("bitsandbytes.functional")


SHAPES = [(128, 64), (512, 384), (300, 256), (1000, 194), (4096, 33)]
IDS = ["128x64", "512x384", "300x256", "1000x194-partial", "4096x33-partial"]


def test_dynamic_map_matches(bnbf) -> None:
    assert torch.equal(dynamic_map(), bnbf.create_dynamic_map())


@pytest.mark.parametrize("double_quant", [False, True], ids=["absmax-fp32", "double-quant"])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_packed_and_absmax_exactly_equal(bnbf, shape, double_quant: bool, dtype) -> None:
    g = torch.Generator().manual_seed(hash(shape) % 2**31)
    w = (torch.randn(*shape, generator=g) * 0.02).to(dtype)
    ours = quantize_nf4(w, 64, double_quant, pad=w.numel() % 64 != 0)
    packed, state = bnbf.quantize_4bit(
        w, blocksize=64, quant_type="nf4", compress_statistics=double_quant
    )
    ref_packed = packed.reshape(-1)
    assert torch.equal(ours.packed[: ref_packed.numel()], ref_packed)
    assert torch.equal(ours.absmax, state.absmax)
    if double_quant:
        assert torch.equal(ours.absmax_offset, state.offset)
        assert torch.equal(ours.absmax_scale, state.state2.absmax)
        assert state.state2.blocksize == 256
    # dequantization: same fp32 arithmetic -> equal up to float rounding (here: bit-exact)
    ref = bnbf.dequantize_4bit(packed, state)
    torch.testing.assert_close(ours.dequantize(), ref, rtol=0, atol=0)
