import pytest
import torch

from seedbed.core_layers import math_attention, topk_sparse_attention


def _qkv(s_q=9, s_k=9, h=4, h_kv=2, d=8, dtype=torch.float32):
    g = torch.Generator().manual_seed(4)
    return (
        torch.randn(2, s_q, h, d, generator=g, dtype=dtype),
        torch.randn(2, s_k, h_kv, d, generator=g, dtype=dtype),
        torch.randn(2, s_k, h_kv, d, generator=g, dtype=dtype),
    )


@pytest.mark.parametrize("causal", [False, True])
def test_topk_with_all_keys_is_full_attention(causal):
    q, k, v = _qkv()
    torch.testing.assert_close(
        topk_sparse_attention(q, k, v, k_top=9, causal=causal),
        math_attention(q, k, v, causal=causal),
        rtol=1e-5,
        atol=1e-5,
    )


def test_topk_one_picks_the_best_key():
    q, k, v = _qkv(h=2, h_kv=2)
    out = topk_sparse_attention(q, k, v, k_top=1)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k)
    best = scores.argmax(-1)  # (B, H, S_q)
    want = (
        torch.stack([v[b, best[b, h], h] for b in range(2) for h in range(2)])
        .view(2, 2, 9, 8)
        .transpose(1, 2)
    )
    torch.testing.assert_close(out, want)


def test_topk_matches_masked_reference():
    q, k, v = _qkv(s_q=6, s_k=12, h=2, h_kv=1)
    k_top = 4
    s = torch.einsum("bqhd,bkhd->bhqk", q, k.expand(-1, -1, 2, -1)) * 8**-0.5
    thresh = s.topk(k_top, -1).values[..., -1:]
    mask = s >= thresh  # (B, H, S_q, S_k) keep the top k_top keys of each query
    want = math_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(topk_sparse_attention(q, k, v, k_top), want, rtol=1e-5, atol=1e-5)


def test_topk_causal_with_fewer_visible_keys_than_k_top():
    q, k, v = _qkv(s_q=5, s_k=5)
    out = topk_sparse_attention(q, k, v, k_top=3, causal=True)
    # query 0 sees only key 0
    torch.testing.assert_close(out[:, 0], v[:, 0].repeat_interleave(2, dim=1))


def test_topk_gradcheck_float64():
    q, k, v = (
        t.requires_grad_() for t in _qkv(s_q=4, s_k=5, h=2, h_kv=1, d=3, dtype=torch.float64)
    )
    assert torch.autograd.gradcheck(
        lambda q, k, v: topk_sparse_attention(q, k, v, 2, causal=True), (q, k, v)
    )


def test_topk_bad_k_top():
    q, k, v = _qkv(s_k=9)
    with pytest.raises(ValueError, match=r"k_top must be <= seq_k = 9, got k_top = 10"):
        topk_sparse_attention(q, k, v, k_top=10)
    with pytest.raises(ValueError, match=r"k_top must be >= 1, got 0"):
        topk_sparse_attention(q, k, v, k_top=0)
    with pytest.raises(TypeError, match=r"k_top must be an int"):
        topk_sparse_attention(q, k, v, k_top=2.0)
