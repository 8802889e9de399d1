"""QuantLoRALinear and apply_quant_lora: PEFT conventions, merge/unmerge, freezing, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from seedbed.core_layers.quant import (
    NF4Linear,
    QuantLoRALinear,
    apply_quant_lora,
    lora_parameters,
    quantize_nf4,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(64, 64)
        self.v_proj = nn.Linear(64, 64, bias=False)
        self.out = nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.q_proj(x)) * self.v_proj(x))


@pytest.mark.parametrize("use_rslora", [False, True], ids=["lora", "rslora"])
def test_init_and_scaling(use_rslora: bool) -> None:
    torch.manual_seed(0)
    base = nn.Linear(32, 16)
    layer = QuantLoRALinear(base, r=4, lora_alpha=8, use_rslora=use_rslora)
    assert layer.scaling == (8 / math.sqrt(4) if use_rslora else 8 / 4)
    assert torch.all(layer.lora_B.weight == 0)
    bound = 1 / math.sqrt(32)  # kaiming_uniform(a=sqrt(5)) on fan_in 32
    assert layer.lora_A.weight.abs().max() <= bound
    assert layer.lora_A.weight.std() > bound / 4
    x = torch.randn(5, 32)
    torch.testing.assert_close(layer(x), base(x))  # a fresh adapter changes nothing
    nn.init.normal_(layer.lora_B.weight)
    expected = base(x) + (x @ layer.lora_A.weight.T @ layer.lora_B.weight.T) * layer.scaling
    torch.testing.assert_close(layer(x), expected)


def test_merge_unmerge_on_linear_base() -> None:
    torch.manual_seed(0)
    layer = QuantLoRALinear(nn.Linear(32, 16), r=4)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(5, 32)
    y = layer(x)
    w0 = layer.base_layer.weight.detach().clone()
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), y, rtol=1e-5, atol=1e-5)
    with pytest.warns(UserWarning, match="already merged"):
        layer.merge()
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, w0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(layer(x), y)


def test_merge_unmerge_on_nf4_base_restores_exactly() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    layer = QuantLoRALinear(NF4Linear.from_linear(lin), r=4, lora_alpha=4)
    with torch.no_grad():
        layer.lora_B.weight.normal_(0, 0.01)
    x = torch.randn(7, 64)
    y = layer(x)
    buffers = {k: v.clone() for k, v in layer.base_layer.named_buffers()}
    layer.merge()
    # merged: the base holds NF4(dequant(W) + ΔW)
    base = layer.base_layer
    assert isinstance(base, NF4Linear)
    target = NF4Linear.from_weight(
        (buffers_dequant := NF4Linear.from_linear(lin).dequantized_weight())
        + layer.delta_weight().detach(),
        lin.bias,
    )
    torch.testing.assert_close(base.dequantized_weight(), target.dequantized_weight())
    assert (layer(x) - y).abs().max() < 0.05 * y.abs().max()  # requantization error only
    layer.unmerge()
    for k, v in layer.base_layer.named_buffers():
        assert torch.equal(v, buffers[k]), k
    torch.testing.assert_close(layer(x), y)
    assert buffers_dequant.shape == (32, 64)


def test_apply_quant_lora_replaces_and_freezes() -> None:
    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(3, 64)
    ref = Tiny()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():  # what the quantized model must compute: NF4-dequantized weights
        for name in ("q_proj", "v_proj"):
            lin = getattr(ref, name)
            lin.weight.copy_(quantize_nf4(lin.weight).dequantize())
    apply_quant_lora(model, target_modules=["q_proj", "v_proj"], r=4)
    assert isinstance(model.q_proj, QuantLoRALinear)
    assert isinstance(model.q_proj.base_layer, NF4Linear)
    assert isinstance(model.out, nn.Linear)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "q_proj.lora_A.weight",
        "q_proj.lora_B.weight",
        "v_proj.lora_A.weight",
        "v_proj.lora_B.weight",
    }
    assert {id(p) for p in lora_parameters(model)} == {
        id(p) for n, p in model.named_parameters() if n in trainable
    }
    torch.testing.assert_close(model(x), ref(x))  # fresh adapters: only the NF4 base counts
    model(x).sum().backward()
    assert model.q_proj.lora_A.weight.grad is not None
    # regex form (PEFT: full match on the qualified name), unquantized
    m2 = apply_quant_lora(Tiny(), target_modules=r".*_proj", r=2, quantize=False)
    assert isinstance(m2.q_proj.base_layer, nn.Linear)
    assert isinstance(m2.v_proj, QuantLoRALinear)


@pytest.mark.parametrize("r", [0, -2, 1.5, True], ids=["r0", "r-neg", "r-float", "r-bool"])
def test_bad_rank_raises_and_leaves_model_untouched(r) -> None:
    model = Tiny()
    with pytest.raises(ValueError, match="r must be a positive int"):
        apply_quant_lora(model, target_modules=["q_proj"], r=r)
    assert isinstance(model.q_proj, nn.Linear)
    with pytest.raises(ValueError, match="r must be a positive int"):
        QuantLoRALinear(nn.Linear(4, 4), r=r)


def test_bad_targets_and_hyperparameters() -> None:
    model = Tiny()
    with pytest.raises(ValueError, match="matched no module"):
        apply_quant_lora(model, target_modules=["k_proj"])
    with pytest.raises(TypeError):
        apply_quant_lora(nn.Sequential(nn.Conv1d(2, 2, 1)), target_modules=["0"])
    with pytest.raises(ValueError, match="lora_dropout"):
        QuantLoRALinear(nn.Linear(4, 4), r=2, lora_dropout=1.0)
    with pytest.raises(ValueError, match="lora_alpha"):
        QuantLoRALinear(nn.Linear(4, 4), r=2, lora_alpha=0)
    assert all(isinstance(m, nn.Linear) for m in (model.q_proj, model.v_proj))
