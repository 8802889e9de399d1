import pytest
import torch

from seedbed.core_layers import SwiGLU


@pytest.mark.oracle
def test_swiglu_matches_hf_qwen2_mlp():
    transformers = pytest.importorskip("transformers")
    from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

    cfg = transformers.Qwen2Config(hidden_size=32, intermediate_size=72, hidden_act="silu")
    torch.manual_seed(0)
    ref = Qwen2MLP(cfg)
    ours = SwiGLU(32, 72)
    ours.load_state_dict(ref.state_dict())  # same parameter names
    x = torch.randn(2, 9, 32)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_swiglu_formula_and_shapes():
    m = SwiGLU(8, 20, bias=True)
    x = torch.randn(3, 4, 8)
    want = m.down_proj(torch.nn.functional.silu(m.gate_proj(x)) * m.up_proj(x))
    torch.testing.assert_close(m(x), want)
    assert m.gate_proj.bias is not None
    assert m(x).shape == (3, 4, 8)


def test_swiglu_bad_input():
    m = SwiGLU(8, 16)
    with pytest.raises(ValueError, match=r"last dimension 8.*\(3, 4, 9\)"):
        m(torch.randn(3, 4, 9))
    with pytest.raises(TypeError, match=r"floating-point"):
        m(torch.ones(3, 8, dtype=torch.int32))
