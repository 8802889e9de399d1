"""Oracle: our LoRA on an unquantized base == PEFT's LoraConfig/get_peft_model (same A and B)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from seedbed.core_layers.quant import QuantLoRALinear, apply_quant_lora

pytestmark = pytest.mark.oracle


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(48, 48)
        self.v_proj = nn.Linear(48, 48, bias=False)
        self.out = nn.Linear(48, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.q_proj(x)) + self.v_proj(x))


@pytest.mark.parametrize(
    ("r", "alpha", "rslora"),
    [(4, 8, False), (8, 16, True), (3, 5, False)],
    ids=["r4", "r8-rslora", "r3"],
)
def test_forward_merge_unmerge_match_peft(r: int, alpha: int, rslora: bool) -> None:
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = Tiny()
    ours = apply_quant_lora(
        copy.deepcopy(base), ["q_proj", "v_proj"], r, alpha, use_rslora=rslora, quantize=False
    )
    cfg = peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0,
        use_rslora=rslora,
    )
    theirs = peft.get_peft_model(copy.deepcopy(base), cfg)
    inner = theirs.base_model.model
    for name in ("q_proj", "v_proj"):
        mine = getattr(ours, name)
        assert isinstance(mine, QuantLoRALinear)
        ref = getattr(inner, name)
        assert mine.scaling == pytest.approx(ref.scaling["default"])
        with torch.no_grad():
            mine.lora_B.weight.normal_()  # non-zero B so the adapter matters
            ref.lora_A["default"].weight.copy_(mine.lora_A.weight)
            ref.lora_B["default"].weight.copy_(mine.lora_B.weight)
    x = torch.randn(4, 6, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
        for name in ("q_proj", "v_proj"):
            getattr(ours, name).merge()
        theirs.merge_adapter()
        for name in ("q_proj", "v_proj"):
            torch.testing.assert_close(
                getattr(ours, name).base_layer.weight,
                getattr(inner, name).base_layer.weight,
                rtol=1e-6,
                atol=1e-6,
            )
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
        for name in ("q_proj", "v_proj"):
            getattr(ours, name).unmerge()
        theirs.unmerge_adapter()
        for name in ("q_proj", "v_proj"):
            torch.testing.assert_close(
                getattr(ours, name).base_layer.weight,
                getattr(inner, name).base_layer.weight,
                rtol=1e-6,
                atol=1e-6,
            )
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    # the same parameters are trainable in both
    mine_trainable = sorted(n for n, p in ours.named_parameters() if p.requires_grad)
    ref_trainable = sorted(
        n.replace("base_model.model.", "").replace(".default", "")
        for n, p in theirs.named_parameters()
        if p.requires_grad
    )
    assert mine_trainable == ref_trainable
