"""QLoRA fine-tuning reaches the loss of full-precision LoRA (within 10%) at the same steps.

A small byte-level MLP language model is pretrained in fp32 on one standard-library source
file, then adapted to another one with LoRA on (a) the fp32 base and (b) the NF4
(double-quantized) base, with identical adapters, data and steps; a plain training loop.
"""

from __future__ import annotations

import copy
import sysconfig
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seedbed.core_layers.quant import apply_quant_lora, lora_parameters

CTX = 8


class ByteMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, 32)
        self.fc1 = nn.Linear(CTX * 32, 192)
        self.fc2 = nn.Linear(192, 256)

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:  # (B, CTX) -> (B, 256)
        return self.fc2(F.gelu(self.fc1(self.embed(ctx).flatten(1))))


def _bytes(name: str) -> torch.Tensor:
    path = Path(sysconfig.get_paths()["stdlib"]) / name
    if not path.exists():
        pytest.skip(f"standard-library source {path} not available")
    return torch.tensor(list(path.read_bytes()[:120_000]), dtype=torch.long)


def _batch(data: torch.Tensor, g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    start = torch.randint(0, data.numel() - CTX - 1, (n,), generator=g)
    idx = start[:, None] + torch.arange(CTX + 1)
    win = data[idx]
    return win[:, :CTX], win[:, CTX]


def _train(
    model: nn.Module,
    params: list[nn.Parameter],
    data: torch.Tensor,
    steps: int,
    lr: float,
    seed: int,
) -> None:
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = _batch(data, g, 64)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def _eval(model: nn.Module, data: torch.Tensor) -> float:
    x, y = _batch(data, torch.Generator().manual_seed(123), 2048)
    return F.cross_entropy(model(x), y).item()


def test_qlora_reaches_lora_loss() -> None:
    text_a, text_b = _bytes("typing.py"), _bytes("argparse.py")
    cut = int(0.8 * text_b.numel())
    train_b, held_b = text_b[:cut], text_b[cut:]
    torch.manual_seed(0)
    base = ByteMLP()
    _train(base, list(base.parameters()), text_a, steps=200, lr=3e-3, seed=1)
    start = _eval(base, held_b)

    losses = {}
    for quantize in (False, True):
        model = copy.deepcopy(base)
        torch.manual_seed(7)  # identical adapter initialisation for both runs
        apply_quant_lora(model, ["fc1", "fc2"], r=8, lora_alpha=16, quantize=quantize)
        _train(model, lora_parameters(model), train_b, steps=150, lr=3e-3, seed=2)
        losses[quantize] = _eval(model, held_b)
    lora, qlora = losses[False], losses[True]
    assert lora < start, (start, lora)
    assert qlora < start, (start, qlora)
    print(f"start {start:.4f}  LoRA {lora:.4f}  QLoRA {qlora:.4f}")
    assert qlora <= 1.10 * lora, f"QLoRA {qlora:.4f} vs LoRA {lora:.4f} (start {start:.4f})"
