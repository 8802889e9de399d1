import pytest
import torch

from seedbed.core_layers import RMSNorm


@pytest.mark.oracle
def test_rmsnorm_matches_hf_qwen2():
    qwen2 = pytest.importorskip("transformers.models.qwen2.modeling_qwen2")
    g = torch.Generator().manual_seed(0)
    ours, ref = RMSNorm(48, eps=1e-6), qwen2.Qwen2RMSNorm(48, eps=1e-6)
    with torch.no_grad():
        w = torch.randn(48, generator=g)
        ours.weight.copy_(w)
        ref.weight.copy_(w)
    x = torch.randn(3, 7, 48, generator=g) * 5
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_rmsnorm_formula_float64():
    norm = RMSNorm(16, eps=1e-5).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(4, 16, dtype=torch.float64)
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rmsnorm_computes_in_fp32_and_casts_back(dtype):
    norm = RMSNorm(32)
    # large values whose squares overflow fp16 if computed in fp16
    x = (torch.randn(2, 5, 32) * 300).to(dtype)
    y = norm(x)
    assert y.dtype == dtype
    want = norm(x.float()).to(dtype)
    torch.testing.assert_close(y, want, rtol=0, atol=0)
    assert torch.isfinite(y).all()


def test_rmsnorm_gradient_flows():
    norm = RMSNorm(8)
    x = torch.randn(2, 8, requires_grad=True)
    norm(x).sum().backward()
    assert x.grad is not None
    assert norm.weight.grad is not None


def test_rmsnorm_bad_input():
    norm = RMSNorm(8)
    with pytest.raises(ValueError, match=r"last dimension 8.*\(2, 7\)"):
        norm(torch.randn(2, 7))
    with pytest.raises(TypeError, match=r"floating-point.*torch.int64"):
        norm(torch.ones(2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"eps must be"):
        RMSNorm(8, eps=0.0)
    with pytest.raises(ValueError, match=r"dim must be >= 1, got 0"):
        RMSNorm(0)
