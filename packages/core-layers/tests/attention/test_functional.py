"""attention() against the math reference, backend dispatch, and input validation."""

import pytest
import torch

from seedbed.core_layers import _HAS_FLASH2, _HAS_FLASH3, attention, last_backend, math_attention

# (B, S_q, S_k, H, H_kv, D, causal, window, mask): each acceptance case of issue 3
CASES = {
    "noncausal-B2-S32-H4-D16": (2, 32, 32, 4, 4, 16, False, None, None),
    "causal-B2-S32-H4-D16": (2, 32, 32, 4, 4, 16, True, None, None),
    "gqa-B2-S32-H8-Hkv2-D16": (2, 32, 32, 8, 2, 16, True, None, None),
    "mqa-B1-S20-H4-Hkv1-D8": (1, 20, 20, 4, 1, 8, False, None, None),
    "window-B2-S48-H4-D16-w7": (2, 48, 48, 4, 2, 16, True, 7, None),
    "window-noncausal-S30-w5": (1, 30, 30, 2, 2, 8, False, 5, None),
    "padding-B3-S24-H4-D16": (3, 24, 24, 4, 2, 16, False, None, "pad"),
    "padding-causal-B3-S24": (3, 24, 24, 4, 4, 16, True, None, "pad"),
    "qlen<klen-causal-S8-K40": (2, 8, 40, 4, 2, 16, True, None, None),
    "qlen>klen-causal-S40-K8": (2, 40, 8, 4, 2, 16, True, None, None),
    "qlen!=klen-noncausal-S9-K17": (2, 9, 17, 4, 4, 16, False, None, None),
    "decode-S1-K33-window8": (2, 1, 33, 4, 2, 16, True, 8, None),
    "odd-B2-S63-H3-D40": (2, 63, 63, 3, 3, 40, True, None, None),
    "odd-noncausal-S63-D40-gqa": (1, 63, 63, 6, 2, 40, False, None, None),
    "float-mask-S16": (2, 16, 16, 2, 2, 8, True, None, "float"),
    "mask-2d-S16": (1, 16, 16, 2, 2, 8, False, None, "2d"),
}


def _inputs(b, s_q, s_k, h, h_kv, d, mask_kind, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, s_q, h, d, generator=g, dtype=dtype)
    k = torch.randn(b, s_k, h_kv, d, generator=g, dtype=dtype)
    v = torch.randn(b, s_k, h_kv, d, generator=g, dtype=dtype)
    mask = None
    if mask_kind == "pad":  # key padding: row r has its first r keys padded out (left padding)
        keep = torch.ones(b, s_k, dtype=torch.bool)
        for r in range(b):
            keep[r, : 3 * r] = False
        mask = keep[:, None, None, :]
    elif mask_kind == "float":
        mask = torch.randn(b, 1, s_q, s_k, generator=g, dtype=dtype)
    elif mask_kind == "2d":
        mask = torch.rand(s_q, s_k, generator=g) > 0.3
    return q, k, v, mask


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_attention_matches_math_fp32(case):
    b, s_q, s_k, h, h_kv, d, causal, window, mask_kind = case
    q, k, v, mask = _inputs(b, s_q, s_k, h, h_kv, d, mask_kind)
    want = math_attention(q, k, v, causal=causal, window=window, attn_mask=mask)
    got = attention(q, k, v, causal=causal, window=window, attn_mask=mask)
    assert last_backend() == "sdpa"  # the CPU's best backend served it
    assert got.shape == (b, s_q, h, d)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    explicit = attention(q, k, v, causal=causal, window=window, attn_mask=mask, backend="math")
    assert last_backend() == "math"
    torch.testing.assert_close(explicit, want, rtol=0, atol=0)


@pytest.mark.parametrize(
    "case", ["gqa-B2-S32-H8-Hkv2-D16", "window-B2-S48-H4-D16-w7", "padding-causal-B3-S24"]
)
def test_attention_gradients_match_math(case):
    b, s_q, s_k, h, h_kv, d, causal, window, mask_kind = CASES[case]
    q, k, v, mask = _inputs(b, s_q, s_k, h, h_kv, d, mask_kind)
    grads = []
    for backend in ("sdpa", "math"):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = attention(*leaves, causal=causal, window=window, attn_mask=mask, backend=backend)
        out.pow(2).sum().backward()
        grads.append([t.grad for t in leaves])
    for a, b_ in zip(*grads):
        torch.testing.assert_close(a, b_, rtol=1e-4, atol=1e-5)


def test_causal_is_bottom_right_aligned():
    q, k, v, _ = _inputs(1, 1, 10, 2, 2, 8, None)
    # a single query at the end sees every key: same as non-causal
    torch.testing.assert_close(attention(q, k, v, causal=True), attention(q, k, v, causal=False))
    # more queries than keys: the first S_q - S_k queries see nothing and output zeros
    q, k, v, _ = _inputs(1, 6, 4, 2, 2, 8, None)
    out = attention(q, k, v, causal=True)
    assert torch.equal(out[:, :2], torch.zeros_like(out[:, :2]))
    assert out[:, 2:].abs().sum() > 0


def test_fully_masked_rows_are_zero_on_every_backend():
    q, k, v, _ = _inputs(2, 5, 5, 2, 2, 8, None)
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, 3] = False
    for backend in ("sdpa", "math"):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = attention(*leaves, attn_mask=mask, backend=backend)
        assert torch.equal(out[1, 3], torch.zeros_like(out[1, 3])), backend
        assert torch.isfinite(out).all()
        out.sum().backward()
        assert all(torch.isfinite(t.grad).all() for t in leaves), backend
        assert torch.equal(leaves[0].grad[1, 3], torch.zeros_like(leaves[0].grad[1, 3]))


def test_softcap_is_served_by_math_and_refused_by_sdpa():
    q, k, v, _ = _inputs(1, 8, 8, 2, 2, 8, None)
    out = attention(q, k, v, causal=True, softcap=2.0)
    assert last_backend() == "math"
    torch.testing.assert_close(out, math_attention(q, k, v, causal=True, softcap=2.0))
    assert not torch.allclose(out, attention(q, k, v, causal=True))
    with pytest.raises(ValueError, match=r"backend='sdpa' cannot serve this call: .*softcap"):
        attention(q, k, v, softcap=2.0, backend="sdpa")


def test_scale_and_dropout():
    q, k, v, _ = _inputs(1, 8, 8, 2, 2, 8, None)
    torch.testing.assert_close(attention(q, k, v, scale=0.3), math_attention(q, k, v, scale=0.3))
    torch.manual_seed(0)
    dropped = attention(q, k, v, dropout_p=0.5)
    assert dropped.shape == q.shape
    assert not torch.allclose(dropped, attention(q, k, v))


@pytest.mark.skipif(_HAS_FLASH2 and _HAS_FLASH3, reason="both flash kernels present")
def test_flash_backends_refuse_clearly_when_absent_or_on_cpu():
    q, k, v, _ = _inputs(1, 8, 8, 2, 2, 8, None)
    for name in ("flash3", "flash2"):
        with pytest.raises(ValueError, match=f"backend='{name}' cannot serve this call"):
            attention(q, k, v, backend=name)


def test_flags_are_bools_and_last_backend_is_a_name():
    assert isinstance(_HAS_FLASH3, bool)
    assert isinstance(_HAS_FLASH2, bool)
    q, k, v, _ = _inputs(1, 4, 4, 1, 1, 8, None)
    attention(q, k, v)
    assert last_backend() in ("flash3", "flash2", "sdpa", "math")


def test_bf16_runs_and_keeps_dtype():
    q, k, v, _ = _inputs(1, 16, 16, 2, 1, 8, None, dtype=torch.bfloat16)
    out = attention(q, k, v, causal=True)
    assert out.dtype == torch.bfloat16
    ref = math_attention(q.float(), k.float(), v.float(), causal=True)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


BAD = {
    "q-3d": (dict(q=(2, 4, 8)), ValueError, r"q must be 4-D, got 3-D with shape \(2, 4, 8\)"),
    "k-5d": (dict(k=(1, 2, 4, 2, 8)), ValueError, r"k must be 4-D, got 5-D"),
    "head-dim": (
        dict(k=(2, 4, 2, 6), v=(2, 4, 2, 6)),
        ValueError,
        r"head dims differ: q has D=8, k has D=6",
    ),
    "gqa-heads": (
        dict(k=(2, 4, 3, 8), v=(2, 4, 3, 8)),
        ValueError,
        r"multiple of KV heads.*H=4, H_kv=3",
    ),
    "kv-mismatch": (dict(v=(2, 5, 2, 8)), ValueError, r"k and v must agree"),
    "batch": (
        dict(k=(1, 4, 2, 8), v=(1, 4, 2, 8)),
        ValueError,
        r"batch sizes differ: q has B=2, k has B=1",
    ),
}


@pytest.mark.parametrize("case", list(BAD.values()), ids=list(BAD))
def test_bad_shapes_raise_with_expected_and_given(case):
    shapes, exc, msg = case
    dims = {"q": (2, 4, 4, 8), "k": (2, 4, 2, 8), "v": (2, 4, 2, 8)} | shapes
    q, k, v = (torch.randn(*dims[n]) for n in "qkv")
    with pytest.raises(exc, match=msg):
        attention(q, k, v)


def test_bad_dtypes_and_options():
    q = torch.randn(1, 4, 2, 8)
    with pytest.raises(TypeError, match=r"q must have a floating-point dtype, got torch.int64"):
        attention(q.long(), q, q)
    with pytest.raises(TypeError, match=r"share one dtype.*float32.*float64"):
        attention(q, q.double(), q)
    with pytest.raises(TypeError, match=r"must be a torch.Tensor, got list"):
        attention([1.0], q, q)
    with pytest.raises(
        ValueError,
        match=r"attn_mask must be broadcastable to \(B, H, S_q, S_k\) = \(1, 2, 4, 4\), got shape \(3, 4\)",
    ):
        attention(q, q, q, attn_mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"attn_mask must be bool.*torch.int64"):
        attention(q, q, q, attn_mask=torch.ones(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"window must be >= 1, got 0"):
        attention(q, q, q, window=0)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\), got 1.5"):
        attention(q, q, q, dropout_p=1.5)
    with pytest.raises(ValueError, match=r"backend must be one of .*got 'cuda'"):
        attention(q, q, q, backend="cuda")
    with pytest.raises(TypeError, match=r"causal must be a bool, got int"):
        attention(q, q, q, causal=1)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize(
    "case",
    [
        "causal-B2-S32-H4-D16",
        "gqa-B2-S32-H8-Hkv2-D16",
        "window-B2-S48-H4-D16-w7",
        "padding-causal-B3-S24",
        "qlen<klen-causal-S8-K40",
        "qlen>klen-causal-S40-K8",
        "odd-B2-S63-H3-D40",
    ],
)
def test_attention_on_cuda_matches_math(case, dtype):
    b, s_q, s_k, h, h_kv, d, causal, window, mask_kind = CASES[case]
    q, k, v, mask = (
        t.cuda() if t is not None else None for t in _inputs(b, s_q, s_k, h, h_kv, d, mask_kind)
    )
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    want = math_attention(
        q.float(), k.float(), v.float(), causal=causal, window=window, attn_mask=mask
    )
    got = attention(q, k, v, causal=causal, window=window, attn_mask=mask)
    assert got.device.type == "cuda"
    assert got.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 2e-2  # CUDA kernels round differently from CPU
    torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol)
    if mask is None and dtype != torch.float32:
        for name, present in (("flash3", _HAS_FLASH3), ("flash2", _HAS_FLASH2)):
            if present and torch.cuda.get_device_capability()[0] >= (9 if name == "flash3" else 8):
                out = attention(q, k, v, causal=causal, window=window, backend=name)
                assert last_backend() == name
                torch.testing.assert_close(out.float(), want, rtol=tol, atol=tol)
