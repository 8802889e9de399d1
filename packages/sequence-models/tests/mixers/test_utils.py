"""Helpers shared by the mixer ops (``mixers/_utils.py``): ``decay_exp``."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from seedbed.sequence_models.mixers._utils import decay_exp, segsum


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_decay_exp_is_exp_above_the_floor_and_zero_below(dtype: torch.dtype) -> None:
    floor = math.log(math.sqrt(torch.finfo(dtype).tiny))  # -43.7 in fp32, -354 in fp64
    x = torch.tensor([0.0, -1.0, -40.0, floor + 0.5, floor - 0.5, 2 * floor, -1e4, -math.inf],
                     dtype=dtype)  # fmt: skip
    got = decay_exp(x)
    assert torch.equal(got[:4], torch.exp(x[:4]))
    assert torch.equal(got[4:], torch.zeros(4, dtype=dtype))
    tiny = torch.finfo(dtype).tiny
    assert not ((got != 0) & (got.abs() < tiny)).any()  # no subnormal numbers


def test_decay_exp_of_a_segsum_keeps_the_causal_zeros_and_has_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    log_a = -torch.rand(2, 7, dtype=torch.float64, generator=g) * 3
    d = decay_exp(segsum(log_a))
    torch.testing.assert_close(d, torch.exp(segsum(log_a)), rtol=0, atol=0)
    assert torch.equal(d.triu(1), torch.zeros_like(d))
    assert gradcheck(lambda t: decay_exp(segsum(t)), (log_a.requires_grad_(),))
    strong = torch.tensor([-1.0, -500.0], dtype=torch.float64, requires_grad=True)
    decay_exp(strong).sum().backward()
    assert strong.grad is not None
    assert strong.grad.tolist() == [math.exp(-1.0), 0.0]
