import math

import pytest
import torch

from seedbed.core_layers import RotaryEmbedding, apply_rotary_emb


@pytest.mark.oracle
@pytest.mark.parametrize("theta", [10000.0, 1_000_000.0])
def test_rope_matches_hf_qwen2(theta):
    transformers = pytest.importorskip("transformers")
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding, apply_rotary_pos_emb

    cfg = transformers.Qwen2Config(
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
    )
    hf = Qwen2RotaryEmbedding(cfg)
    ours = RotaryEmbedding(16, rope_theta=theta)
    b, s = 2, 11
    pos = torch.stack([torch.arange(s), torch.arange(s) + 37])  # (B, S), with an offset
    q = torch.randn(b, s, 4, 16)  # (B, S, H, D)
    k = torch.randn(b, s, 2, 16)
    cos_hf, sin_hf = hf(q, pos)  # (B, S, D)
    q_hf, k_hf = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos_hf, sin_hf)
    cos, sin = ours(pos)  # (B, S, 1, D)
    assert cos.shape == (b, s, 1, 16)
    torch.testing.assert_close(cos[:, :, 0], cos_hf, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        apply_rotary_emb(q, cos, sin), q_hf.transpose(1, 2), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(
        apply_rotary_emb(k, cos, sin), k_hf.transpose(1, 2), rtol=1e-5, atol=1e-5
    )


def test_interleaved_matches_complex_rotation():
    # Meta's LLaMA: view consecutive pairs as complex numbers and multiply by e^{i m theta}.
    d, s = 8, 6
    rope = RotaryEmbedding(d, rope_theta=500.0, interleaved=True)
    x = torch.randn(2, s, 3, d, dtype=torch.float64)
    pos = torch.arange(s)
    cos, sin = rope(pos)
    got = rope.rotate(x.float(), cos, sin).double()
    inv = 1.0 / (500.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    angles = pos[:, None].double() * inv  # (S, D/2)
    xc = torch.view_as_complex(x.reshape(2, s, 3, d // 2, 2))
    want = torch.view_as_real(xc * torch.polar(torch.ones_like(angles), angles)[:, None]).flatten(
        -2
    )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_interleaved_equals_rotate_half_on_permuted_dims():
    d = 12
    x = torch.randn(1, 5, 2, d)
    perm = torch.cat(
        [torch.arange(0, d, 2), torch.arange(1, d, 2)]
    )  # pairs (2i,2i+1) -> (i, i+D/2)
    pos = torch.arange(5)
    half, inter = RotaryEmbedding(d), RotaryEmbedding(d, interleaved=True)
    y_inter = inter.rotate(x, *inter(pos))
    y_half = half.rotate(x[..., perm], *half(pos))
    torch.testing.assert_close(y_inter[..., perm], y_half)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_relative_position_property(interleaved):
    d = 16
    rope = RotaryEmbedding(d, interleaved=interleaved)
    q = torch.randn(1, 1, 1, d, dtype=torch.float32)
    k = torch.randn(1, 1, 1, d, dtype=torch.float32)

    def score(m: int, n: int) -> float:
        qm = rope.rotate(q, *rope(torch.tensor([m])))
        kn = rope.rotate(k, *rope(torch.tensor([n])))
        return float((qm * kn).sum())

    assert math.isclose(score(3, 1), score(10, 8), rel_tol=1e-4, abs_tol=1e-5)
    assert math.isclose(score(0, 0), float((q * k).sum()), rel_tol=1e-5, abs_tol=1e-6)


def test_rope_offsets_and_dtype():
    rope = RotaryEmbedding(8)
    cos_all, _ = rope(torch.arange(20))
    cos_off, _ = rope(torch.arange(5, 12))
    torch.testing.assert_close(cos_off, cos_all[5:12])
    x = torch.randn(1, 7, 2, 8).to(torch.bfloat16)
    assert apply_rotary_emb(x, *rope(torch.arange(7))).dtype == torch.bfloat16


def test_rope_bad_input():
    with pytest.raises(ValueError, match=r"even.*got 7"):
        RotaryEmbedding(7)
    rope = RotaryEmbedding(8)
    with pytest.raises(TypeError, match=r"integer tensor.*float32"):
        rope(torch.arange(4.0))
    with pytest.raises(ValueError, match=r"1-D or 2-D"):
        rope(torch.zeros(1, 2, 3, dtype=torch.long))
    cos, sin = rope(torch.arange(4))
    with pytest.raises(ValueError, match=r"head dim 6"):
        apply_rotary_emb(torch.randn(1, 4, 2, 6), cos, sin)
    with pytest.raises(ValueError, match=r"do not broadcast"):
        apply_rotary_emb(torch.randn(1, 5, 2, 8), cos, sin)
    with pytest.raises(TypeError, match=r"floating-point"):
        apply_rotary_emb(torch.ones(1, 4, 2, 8, dtype=torch.long), cos, sin)
