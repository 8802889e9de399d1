import pytest
import torch
from torch import nn

from seedbed.core_layers import KVCache, MultiHeadAttention, RotaryEmbedding
from seedbed.core_layers.attention import attention
from seedbed.core_layers.attention.module import cached_attention, split_qkv


def _hf_setup(sliding_window=None):
    transformers = pytest.importorskip("transformers")
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2RotaryEmbedding

    cfg = transformers.Qwen2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
        use_sliding_window=sliding_window is not None,
        sliding_window=sliding_window,
        max_window_layers=0,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = Qwen2Attention(cfg, layer_idx=0).eval()
    for p in hf.parameters():  # make biases non-zero so that they are tested too
        nn.init.normal_(p, std=0.2)
    ours = MultiHeadAttention(
        64, 4, 2, bias=True, o_bias=False, rope=RotaryEmbedding(16, 10000.0), window=sliding_window
    ).eval()
    ours.load_state_dict(hf.state_dict())  # HF parameter names
    return cfg, hf, Qwen2RotaryEmbedding(cfg), ours


@pytest.mark.oracle
@pytest.mark.parametrize("sliding_window", [None, 4], ids=["full", "sliding4"])
def test_attention_block_matches_hf_qwen2(sliding_window):
    cfg, hf, hf_rope, ours = _hf_setup(sliding_window)  # skips without transformers
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    b, s = 2, 13
    x = torch.randn(b, s, 64)
    keep = torch.ones(b, s, dtype=torch.long)
    keep[1, :3] = 0  # left padding in the second row
    pos = (keep.cumsum(-1) - 1).clamp(min=0)  # (B, S) positions that skip the padding
    make = create_sliding_window_causal_mask if sliding_window else create_causal_mask
    hf_mask = make(
        config=cfg, inputs_embeds=x, attention_mask=keep, past_key_values=None, position_ids=pos
    )
    with torch.no_grad():
        want, _ = hf(x, position_embeddings=hf_rope(x, pos), attention_mask=hf_mask)
        got = ours(x, positions=pos, attn_mask=keep.bool()[:, None, None, :])
    real = keep.bool()  # HF gives padded query rows a uniform average; compare real tokens
    torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-5)


def test_cached_decoding_equals_full_forward():
    torch.manual_seed(0)
    m = MultiHeadAttention(48, 6, 2, rope=RotaryEmbedding(8), window=5).eval()
    x = torch.randn(2, 12, 48)
    with torch.no_grad():
        full = m(x)
        cache = KVCache(2, 16, 2, 8)
        steps = [m(x[:, :5], cache=cache)] + [m(x[:, i : i + 1], cache=cache) for i in range(5, 12)]
    assert cache.size == 12
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_injected_projections_and_no_rope():
    calls = []

    class Tap(nn.Linear):
        def forward(self, x):
            calls.append(self.out_features)
            return super().forward(x)

    m = MultiHeadAttention(
        16,
        4,
        1,
        head_dim=6,
        q_proj=Tap(16, 24),
        k_proj=Tap(16, 6),
        v_proj=Tap(16, 6),
        o_proj=Tap(24, 16),
    )
    out = m(torch.randn(2, 5, 16), causal=False)
    assert out.shape == (2, 5, 16)
    assert sorted(calls) == [6, 6, 16, 24]
    assert isinstance(m.q_proj, Tap)


def test_module_bad_input_and_cache_unchanged_on_failure():
    m = MultiHeadAttention(16, 4, 2)
    with pytest.raises(ValueError, match=r"x must be \(B, S, d_model=16\), got \(2, 3, 8\)"):
        m(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match=r"x must be 3-D, got 2-D"):
        m(torch.randn(3, 16))
    with pytest.raises(
        ValueError, match=r"cache must have \(B, H_kv, D\) = \(2, 2, 4\), got \(2, 4, 4\)"
    ):
        m(torch.randn(2, 3, 16), cache=KVCache(2, 8, 4, 4))
    cache = KVCache(2, 4, 2, 4)
    with torch.no_grad():
        m(torch.randn(2, 3, 16), cache=cache)
        before = cache.k.clone()
        with pytest.raises(
            ValueError, match=r"KVCache overflow: max_seq_len is 4, got 3 stored \+ 2 new"
        ):
            m(torch.randn(2, 2, 16), cache=cache)
    assert cache.size == 3
    assert torch.equal(cache.k, before)
    with pytest.raises(
        ValueError, match=r"positions were given but this MultiHeadAttention has no rope"
    ):
        m(torch.randn(2, 3, 16), positions=torch.arange(3))
    roped = MultiHeadAttention(16, 4, 2, rope=RotaryEmbedding(4))
    with pytest.raises(
        ValueError, match=r"positions must be \(S,\) or \(B, S\) with S=3, got \(4,\)"
    ):
        roped(torch.randn(2, 3, 16), positions=torch.arange(4))
    with pytest.raises(TypeError, match=r"positions must be a torch.Tensor, got list"):
        roped(torch.randn(2, 3, 16), positions=[0, 1, 2])
    with pytest.raises(ValueError, match=r"n_heads must be a multiple of n_kv_heads, got 4 and 3"):
        MultiHeadAttention(16, 4, 3)
    with pytest.raises(ValueError, match=r"rope.head_dim must equal head_dim 4, got 8"):
        MultiHeadAttention(16, 4, rope=RotaryEmbedding(8))


@pytest.mark.parametrize("cached", [False, True], ids=["nocache", "cache"])
@pytest.mark.parametrize("kv_heads", [1, 2, 6], ids=["MQA", "GQA2", "MHA"])
def test_split_qkv_and_cached_attention_equal_separate_projections(kv_heads, cached):
    """The shared fused-qkv core gives what rotating q and k apart and ``attention`` give."""
    torch.manual_seed(0)
    b, s, h, d = 2, 7, 6, 8
    rope = RotaryEmbedding(d, rope_theta=500.0)
    qkv = torch.randn(b, s, h + 2 * kv_heads, d)  # (B, S, H + 2 H_kv, D)
    pos = torch.arange(3, 3 + s)
    cos, sin = rope._fast_tables(pos)
    q, k, v = qkv.split([h, kv_heads, kv_heads], dim=2)
    c, sn = rope(pos)
    q, k = rope.rotate(q, c, sn), rope.rotate(k, c, sn)
    past_k, past_v = torch.randn(b, 3, kv_heads, d), torch.randn(b, 3, kv_heads, d)
    if cached:
        cache = KVCache(b, 16, kv_heads, d)
        cache.update(past_k, past_v)
        want = attention(
            q, torch.cat([past_k, k], 1), torch.cat([past_v, v], 1), causal=True
        ).reshape(b, s, h * d)
    else:
        cache = None
        want = attention(q, k, v, causal=True).reshape(b, s, h * d)
    gq, gk, gv = split_qkv(qkv, h, rope, cos, sin)
    torch.testing.assert_close(gq, q)
    torch.testing.assert_close(gk, k)
    torch.testing.assert_close(gv, v)
    got = cached_attention(gq, gk, gv, cache, None, True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    if cache is not None:
        assert cache.size == 3 + s
        torch.testing.assert_close(cache.k[:, 3 : 3 + s], k)
        torch.testing.assert_close(cache.v[:, 3 : 3 + s], v)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_cached_decoding_on_cuda(dtype):
    torch.manual_seed(0)
    m = MultiHeadAttention(64, 8, 2, rope=RotaryEmbedding(8)).cuda().to(dtype).eval()
    x = torch.randn(2, 10, 64, device="cuda", dtype=dtype)
    with torch.no_grad():
        full = m(x)
        cache = KVCache(2, 10, 2, 8, dtype=dtype, device="cuda")
        steps = [m(x[:, :4], cache=cache)] + [m(x[:, i : i + 1], cache=cache) for i in range(4, 10)]
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=tol, atol=tol)
