from __future__ import annotations

import math

import pytest
import torch

from seedbed.alignment import bradley_terry_loss, dpo_loss


def test_bradley_terry_matches_formula():
    c = torch.tensor([2.0, 0.0, -1.0], dtype=torch.float64)
    r = torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64)
    expect = (
        sum(-math.log(1 / (1 + math.exp(-(a - b)))) for a, b in zip(c.tolist(), r.tolist())) / 3
    )
    assert bradley_terry_loss(c, r).item() == pytest.approx(expect, rel=1e-12)


def test_dpo_zero_margin_is_log2_and_gradient_sign():
    z = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    loss = dpo_loss(
        z,
        torch.zeros(4, dtype=torch.float64),
        torch.zeros(4, dtype=torch.float64),
        torch.zeros(4, dtype=torch.float64),
        beta=0.5,
    )
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert (z.grad < 0).all()  # raising the chosen log-prob lowers the loss


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError, match="floating"):
        bradley_terry_loss(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(*(torch.zeros(2) for _ in range(4)), beta=0.0)
