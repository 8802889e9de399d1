"""Delta Gradient Descent: SGD when the decay is off, Eq. 57 on one input, training, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seedbed.core_layers.optim import DeltaGradientDescent


def _mlp(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1)).to(dtype)


def _data(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = torch.sin(x.sum(-1, keepdim=True)) + 0.05 * torch.randn(n, 1, generator=g)
    return x, y


def test_decay_off_equals_sgd() -> None:
    x, y = _data()
    a, b = _mlp(), _mlp()
    dgd = DeltaGradientDescent(a.parameters(), lr=0.1, decay=0.0, weight_decay=0.01)
    dgd.attach(a)  # recording inputs changes nothing when the decay is off
    sgd = torch.optim.SGD(b.parameters(), lr=0.1, weight_decay=0.01)
    for _ in range(5):
        for model, opt in ((a, dgd), (b, sgd)):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("decay", [1.0, 0.3])
def test_single_input_step_is_eq57(decay: float) -> None:
    # one input x: W' = W (I - η' λ x xᵀ) - η' (∇_y L) xᵀ with η' = η / (1 + η λ ‖x‖²)
    torch.manual_seed(0)
    lin = nn.Linear(6, 4, bias=False).double()
    w0 = lin.weight.detach().clone()
    x = torch.randn(6, dtype=torch.float64)
    target = torch.randn(4, dtype=torch.float64)
    lr = 0.2
    opt = DeltaGradientDescent(lin.parameters(), lr=lr, decay=decay)
    opt.attach(lin)
    y = lin(x[None])[0]
    loss = 0.5 * (y - target).square().sum()
    loss.backward()
    opt.step()
    grad_y = (y - target).detach()  # ∇_y L
    eta_p = lr / (1 + lr * decay * x.dot(x))
    expected = w0 @ (
        torch.eye(6, dtype=torch.float64) - eta_p * decay * torch.outer(x, x)
    ) - eta_p * torch.outer(grad_y, x)
    torch.testing.assert_close(lin.weight.detach(), expected, rtol=1e-12, atol=1e-12)


def test_batch_step_is_proximal_solution() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(5, 3).double()
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    x = torch.randn(10, 5, dtype=torch.float64)
    opt = DeltaGradientDescent(lin.parameters(), lr=0.1, decay=2.0)
    opt.attach(lin)
    lin(x).square().mean().backward()
    gw, gb = lin.weight.grad.clone(), lin.bias.grad.clone()
    opt.step()
    c = x.T @ x / 10
    expected = (w0 - 0.1 * gw) @ torch.linalg.inv(torch.eye(5, dtype=torch.float64) + 0.1 * 2.0 * c)
    torch.testing.assert_close(lin.weight.detach(), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lin.bias.detach(), b0 - 0.1 * gb)  # the bias gets plain SGD


def test_trains_mlp_to_lower_loss() -> None:
    # unit-norm inputs, as the paper's DGD assumes (‖x‖ = 1), and a random teacher MLP
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(128, 8, generator=g), dim=-1)
    teacher = _mlp()
    for p in teacher.parameters():
        nn.init.normal_(p, std=1.0, generator=g)
    with torch.no_grad():
        y = teacher(x)
    model = _mlp()
    opt = DeltaGradientDescent(model.parameters(), lr=0.1, decay=1.0)
    handles = opt.attach(model)
    assert len(handles) == 2
    first = None
    for _ in range(150):
        loss = F.mse_loss(model(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = F.mse_loss(model(x), y).item()  # eval forward: not recorded
    assert final < 0.5 * first, (first, final)
    assert not opt._inputs


def test_validation_and_missing_inputs() -> None:
    params = list(_mlp().parameters())
    cases = [
        (dict(lr=-1.0), "learning rate"),
        (dict(decay=-0.1), "decay"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(lr=float("nan")), "learning rate"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            DeltaGradientDescent(params, **kwargs)
    model = _mlp()
    opt = DeltaGradientDescent(model.parameters(), lr=0.1, decay=1.0)
    x, y = _data(16)
    F.mse_loss(model(x), y).backward()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="attach"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        DeltaGradientDescent(model.parameters()).attach(nn.Sequential(nn.Linear(2, 2)))
