import pytest
import torch

from seedbed.core_layers import chunked_attention, math_attention

CASES = {
    "noncausal-B2-S37-H4-D16-c8": (2, 37, 37, 4, 4, 16, False, None, None, 8),
    "causal-B2-S37-H4-D16-c8": (2, 37, 37, 4, 4, 16, True, None, None, 8),
    "gqa-causal-S40-H8-Hkv2-c16": (1, 40, 40, 8, 2, 16, True, None, None, 16),
    "window-causal-S50-w9-c7": (2, 50, 50, 2, 1, 8, True, 9, None, 7),
    "pad-S24-c5": (3, 24, 24, 2, 2, 8, True, None, "pad", 5),
    "float-mask-S20-c6": (2, 20, 20, 2, 2, 8, False, None, "float", 6),
    "qlen<klen-S9-K31-c4": (2, 9, 31, 2, 2, 8, True, None, None, 4),
    "qlen>klen-S31-K9-c4": (2, 31, 9, 2, 2, 8, True, None, None, 4),
    "odd-S63-D40-c16": (1, 63, 63, 3, 3, 40, True, None, None, 16),
    "chunk>S-S10-c64": (1, 10, 10, 2, 2, 8, True, None, None, 64),
}


def _inputs(b, s_q, s_k, h, h_kv, d, mask_kind, dtype=torch.float32):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(b, s_q, h, d, generator=g, dtype=dtype)
    k = torch.randn(b, s_k, h_kv, d, generator=g, dtype=dtype)
    v = torch.randn(b, s_k, h_kv, d, generator=g, dtype=dtype)
    mask = None
    if mask_kind == "pad":
        keep = torch.ones(b, s_k, dtype=torch.bool)
        for r in range(b):
            keep[r, : 4 * r] = False
        mask = keep[:, None, None, :]
    elif mask_kind == "float":
        mask = torch.randn(b, 1, s_q, s_k, generator=g, dtype=dtype)
    return q, k, v, mask


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_chunked_matches_math_fp32(case):
    b, s_q, s_k, h, h_kv, d, causal, window, mask_kind, chunk = case
    q, k, v, mask = _inputs(b, s_q, s_k, h, h_kv, d, mask_kind)
    want = math_attention(q, k, v, causal=causal, window=window, attn_mask=mask)
    got = chunked_attention(q, k, v, chunk_size=chunk, causal=causal, window=window, attn_mask=mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("causal", "window", "mask_kind", "s_q", "s_k"),
    [
        (True, None, None, 7, 7),
        (True, 3, "pad", 7, 7),
        (False, None, "float", 6, 7),
        (True, None, None, 3, 7),
    ],
    ids=["causal", "window-pad", "float-mask", "qlen<klen"],
)
def test_chunked_gradcheck_float64(causal, window, mask_kind, s_q, s_k):
    q, k, v, mask = _inputs(1, s_q, s_k, 2, 1, 4, mask_kind, dtype=torch.float64)
    leaves = tuple(t.requires_grad_() for t in (q, k, v))

    def fn(q, k, v):
        return chunked_attention(
            q, k, v, chunk_size=3, causal=causal, window=window, attn_mask=mask
        )

    assert torch.autograd.gradcheck(fn, leaves)


def test_chunked_backward_matches_math():
    q, k, v, _ = _inputs(2, 33, 33, 4, 2, 8, None)
    grads = []
    for fn in (
        lambda *a: math_attention(*a, causal=True),
        lambda *a: chunked_attention(*a, chunk_size=8, causal=True),
    ):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        fn(*leaves).pow(2).sum().backward()
        grads.append([t.grad for t in leaves])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_chunked_bad_input():
    q = torch.randn(1, 4, 2, 8)
    with pytest.raises(ValueError, match=r"chunk_size must be >= 1, got 0"):
        chunked_attention(q, q, q, chunk_size=0)
    with pytest.raises(ValueError, match=r"q must be 4-D, got 3-D"):
        chunked_attention(q[0], q, q)
    with pytest.raises(TypeError, match=r"floating-point.*torch.int32"):
        chunked_attention(q, q.int(), q)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_chunked_on_cuda_matches_math_and_backward():
    b, s_q, s_k, h, h_kv, d, causal, window, mask_kind, chunk = CASES["window-causal-S50-w9-c7"]
    q, k, v, _ = (
        t.cuda() if t is not None else None for t in _inputs(b, s_q, s_k, h, h_kv, d, mask_kind)
    )
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    got = chunked_attention(*leaves, chunk_size=chunk, causal=causal, window=window)
    want = math_attention(q, k, v, causal=causal, window=window)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.sum().backward()
    assert all(t.grad is not None and t.grad.is_cuda for t in leaves)
