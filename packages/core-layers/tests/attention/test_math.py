"""The math reference against a per-query loop written straight from the definitions."""

import pytest
import torch

from seedbed.core_layers.attention.math import math_attention, safe_softmax


def _loop_reference(q, k, v, *, causal, window, mask, scale):
    b, s_q, h, _ = q.shape
    s_k, h_kv = k.shape[1], k.shape[2]
    out = torch.zeros(b, s_q, h, v.shape[-1], dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            kv = hi // (h // h_kv)
            for i in range(s_q):
                ia = i + s_k - s_q
                vis = [
                    j
                    for j in range(s_k)
                    if (not causal or j <= ia)
                    and (window is None or ia - j < window)
                    and (mask is None or bool(mask[bi, j]))
                ]
                if not vis:
                    continue
                sc = torch.stack([q[bi, i, hi] @ k[bi, j, kv] * scale for j in vis])
                p = torch.softmax(sc, 0)
                out[bi, i, hi] = sum(p[n] * v[bi, j, kv] for n, j in enumerate(vis))
    return out


@pytest.mark.parametrize(
    ("s_q", "s_k", "h", "h_kv", "causal", "window", "pad"),
    [
        (5, 5, 2, 2, False, None, False),
        (5, 5, 4, 2, True, None, False),
        (3, 7, 2, 1, True, None, False),
        (7, 3, 2, 2, True, None, False),
        (6, 6, 2, 1, True, 3, True),
        (4, 6, 2, 2, False, 2, True),
    ],
    ids=lambda v: str(v),
)
def test_math_matches_loop_definition(s_q, s_k, h, h_kv, causal, window, pad):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, s_q, h, 3, dtype=torch.float64, generator=g)
    k = torch.randn(2, s_k, h_kv, 3, dtype=torch.float64, generator=g)
    v = torch.randn(2, s_k, h_kv, 4, dtype=torch.float64, generator=g)
    key_ok = torch.ones(2, s_k, dtype=torch.bool)
    if pad:
        key_ok[0, :2] = False
    mask = key_ok if pad else None
    got = math_attention(
        q,
        k,
        v,
        causal=causal,
        window=window,
        attn_mask=None if mask is None else mask[:, None, None, :],
        scale=0.7,
    )
    want = _loop_reference(q, k, v, causal=causal, window=window, mask=mask, scale=0.7)
    torch.testing.assert_close(got, want)


def test_safe_softmax_rows_all_masked_give_zero_and_finite_grad():
    s = torch.tensor([[0.5, -1.0, 2.0], [float("-inf")] * 3], requires_grad=True)
    p = safe_softmax(s)
    torch.testing.assert_close(p[0], torch.softmax(s[0], 0))
    assert torch.equal(p[1], torch.zeros(3))
    (p * torch.randn(2, 3)).sum().backward()
    assert torch.isfinite(s.grad[0]).all()


def test_math_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(1, 4, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(1, 5, 1, 3, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(1, 5, 1, 3, dtype=torch.float64, generator=g, requires_grad=True)
    mask = torch.rand(1, 1, 4, 5, generator=g, dtype=torch.float64)  # additive float mask
    assert torch.autograd.gradcheck(
        lambda q, k, v: math_attention(q, k, v, causal=True, attn_mask=mask, softcap=3.0), (q, k, v)
    )
