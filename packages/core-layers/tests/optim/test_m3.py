"""M3 optimizer and Newton–Schulz: orthogonality, Algorithm 1 steps, training, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seedbed.core_layers.optim import CUBIC, M3Optimizer, newton_schulz


@pytest.mark.parametrize(
    "shape", [(64, 32), (32, 64), (256, 64), (48, 8, 3)], ids=["64x32", "32x64", "256x64", "48x8x3"]
)
def test_newton_schulz_singular_values_near_one(shape) -> None:
    m = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    o = newton_schulz(m)  # M3's default: 5 Muon steps + 2 cubic polishing steps
    s = torch.linalg.svdvals(o.reshape(shape[0], -1))
    assert (s - 1).abs().max() < 0.1, s
    # same singular vectors as m: o is the polar factor U Vᵀ up to the polynomial's error
    u, _, vh = torch.linalg.svd(m.reshape(shape[0], -1), full_matrices=False)
    torch.testing.assert_close(o.reshape(shape[0], -1), u @ vh, atol=0.1, rtol=0)
    # the classical cubic iteration converges all the way
    s3 = torch.linalg.svdvals(
        newton_schulz(m, 12, coefficients=CUBIC, polish_steps=0).reshape(shape[0], -1)
    )
    assert (s3 - 1).abs().max() < 1e-3


def test_newton_schulz_vector_is_normalised() -> None:
    v = torch.randn(10)
    torch.testing.assert_close(newton_schulz(v), v / v.norm())


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 1))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    return x, torch.sin(x @ torch.randn(16, 1, generator=g))


def test_orthogonalized_update_has_unit_singular_values_during_training() -> None:
    x, y = _data()
    model = _mlp()
    opt = M3Optimizer(model.parameters(), lr=1e-3, frequency=3)
    for _ in range(7):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
    w = model[0].weight  # (64, 16)
    o1, o2 = opt.orthogonalized_momenta(w)
    for o in (o1, o2):
        s = torch.linalg.svdvals(o)
        assert (s - 1).abs().max() < 0.1, s


@pytest.mark.parametrize("accumulate", ["ema", "sum"])
def test_trains_mlp_to_lower_loss(accumulate: str) -> None:
    x, y = _data()
    model = _mlp()
    opt = M3Optimizer(model.parameters(), lr=1e-3, accumulate=accumulate)
    losses = []
    for _ in range(100):
        loss = F.mse_loss(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_first_steps_follow_algorithm_1_as_printed() -> None:
    # accumulate="sum": M1 = β1 g, V = β2 g², O2 = 0 in the first chunk
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(12, 5, dtype=torch.float64))
    p0 = p.detach().clone()
    b1, b2, b3, lr, eps, alpha = 0.9, 0.5, 0.7, 0.01, 1e-8, 0.3
    opt = M3Optimizer(
        [p], lr=lr, betas=(b1, b2, b3), alpha=alpha, eps=eps, frequency=2, accumulate="sum"
    )
    grads = [torch.randn(12, 5, dtype=torch.float64) for _ in range(3)]
    p.grad = grads[0]
    opt.step()
    expected = p0 - lr * newton_schulz(b1 * grads[0]) / (b2 * grads[0] ** 2 + eps).sqrt()
    torch.testing.assert_close(p.detach(), expected)
    p.grad = grads[1]
    opt.step()
    assert torch.all(opt.state[p]["o2"] == 0)  # still in chunk 0
    p.grad = grads[2]
    opt.step()  # step 3 opens chunk 1: M2 = β3 (g1 + g2)
    torch.testing.assert_close(opt.state[p]["m2"], b3 * (grads[0] + grads[1]))
    torch.testing.assert_close(opt.state[p]["o2"], newton_schulz(b3 * (grads[0] + grads[1])))
    torch.testing.assert_close(opt.state[p]["v"], b2 * sum(g**2 for g in grads))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=-1e-3),
        dict(betas=(1.0, 0.9, 0.9)),
        dict(betas=(0.9, -0.1, 0.9)),
        dict(betas=(0.9, 0.9)),
        dict(alpha=-1.0),
        dict(eps=0.0),
        dict(frequency=0),
        dict(frequency=2.5),
        dict(ns_steps=0),
        dict(ns_polish_steps=-1),
        dict(weight_decay=-0.1),
        dict(accumulate="mean"),
    ],
    ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()),
)
def test_hyperparameter_validation(kwargs) -> None:
    with pytest.raises(ValueError, match=r"Invalid|betas|accumulate"):
        M3Optimizer(_mlp().parameters(), **kwargs)
