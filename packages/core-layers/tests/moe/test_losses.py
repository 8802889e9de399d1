"""Router losses: hand formulas, balanced value, HF oracle."""

from __future__ import annotations

import pytest
import torch

from seedbed.core_layers.moe import load_balancing_loss, router_z_loss


def test_load_balancing_loss_hand_formula() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 6, generator=g, dtype=torch.float64)
    probs = logits.softmax(-1)
    idx = probs.topk(2, -1).indices
    f = torch.zeros(6, dtype=torch.float64)
    for t in range(50):
        for s in range(2):
            f[idx[t, s]] += 1 / 50
    expected = 6 * (f * probs.mean(0)).sum()
    torch.testing.assert_close(load_balancing_loss(probs, idx, 6), expected)


@pytest.mark.parametrize("top_k", [1, 2])
def test_load_balancing_loss_is_k_when_perfectly_balanced(top_k: int) -> None:
    e, t = 4, 8
    probs = torch.full((t, e), 1 / e)
    idx = torch.stack([(torch.arange(t) + s) % e for s in range(top_k)], -1)
    assert load_balancing_loss(probs, idx, e).item() == pytest.approx(top_k)


def test_load_balancing_loss_has_gradient_to_probs() -> None:
    logits = torch.randn(10, 4, requires_grad=True)
    probs = logits.softmax(-1)
    load_balancing_loss(probs, probs.topk(1, -1).indices, 4).backward()
    assert logits.grad is not None
    assert logits.grad.abs().sum() > 0


def test_router_z_loss_formula() -> None:
    logits = torch.randn(7, 5, dtype=torch.float64)
    expected = (logits.exp().sum(-1).log() ** 2).mean()
    torch.testing.assert_close(router_z_loss(logits), expected.float())


@pytest.mark.oracle
@pytest.mark.parametrize("top_k", [1, 2])
def test_load_balancing_loss_matches_hf(top_k: int) -> None:
    modeling = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    logits = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    probs = logits.softmax(-1)
    ours = load_balancing_loss(probs, probs.topk(top_k, -1).indices, 8)
    ref = modeling.load_balancing_loss_func((logits,), 8, top_k)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="probs must have shape"):
        load_balancing_loss(torch.rand(4, 3), torch.zeros(4, 1, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="logits must have shape"):
        router_z_loss(torch.rand(4))
