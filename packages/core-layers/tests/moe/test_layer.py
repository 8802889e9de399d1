"""MoELayer / moe_dispatch against the plain per-expert loop (naive_moe)."""

from __future__ import annotations

import pytest
import torch

from seedbed.core_layers.moe import (
    HashRouter,
    MoELayer,
    SwitchRouter,
    grouped_mm_supported,
    moe_dispatch,
    naive_moe,
)

BACKENDS = [
    "batched",
    pytest.param(
        "grouped_mm",
        marks=pytest.mark.skipif(
            not grouped_mm_supported(torch.device("cpu"), torch.float32),
            reason="this torch has no CPU grouped_mm",
        ),
    ),
]


def _loop_reference(
    layer: MoELayer, x: torch.Tensor, ids: torch.Tensor | None = None
) -> torch.Tensor:
    r = layer.router(x.reshape(-1, layer.d_model), ids=None if ids is None else ids.reshape(-1))
    y = naive_moe(
        x.reshape(-1, layer.d_model),
        r.expert_index,
        r.gates,
        r.keep,
        layer.gate_up_proj,
        layer.down_proj,
    )
    return y.reshape(x.shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("router", "top_k", "cap"),
    [
        ("switch", 1, None),
        ("switch", 2, None),
        ("switch", 2, 0.5),
        ("switch", 1, 0.75),
        ("hash", 2, None),
    ],
    ids=["switch-k1", "switch-k2", "switch-k2-cap0.5", "switch-k1-cap0.75", "hash-k2"],
)
def test_layer_matches_per_expert_loop(
    backend: str, router: str, top_k: int, cap: float | None
) -> None:
    torch.manual_seed(0)
    layer = MoELayer(32, 48, 8, router=router, top_k=top_k, capacity_factor=cap, dispatch=backend)
    x = torch.randn(2, 37, 32, requires_grad=True)
    ids = torch.randint(0, 1000, (2, 37)) if router == "hash" else None
    y, _aux = layer(x, ids)
    if cap is not None:
        assert layer.last_router_output is not None
        assert layer.last_router_output.num_dropped > 0
    x_ref = x.detach().clone().requires_grad_(True)
    ref = _loop_reference(layer, x_ref, ids)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    # gradients w.r.t. input, experts and router agree with the loop as well
    g = torch.randn_like(y)
    params = [p for p in layer.parameters()]
    grads = torch.autograd.grad(y, [x, *params], g)
    grads_ref = torch.autograd.grad(ref, [x_ref, *params], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_dropped_tokens_pass_through_residual() -> None:
    torch.manual_seed(0)
    layer = MoELayer(16, 32, 4, top_k=1, capacity_factor=0.25)
    x = torch.randn(64, 16)
    y, _ = layer(x)
    r = layer.last_router_output
    assert r is not None
    dropped = ~r.keep.any(-1)  # tokens with no expert left
    assert dropped.any()
    assert (~dropped).any()
    assert torch.all(y[dropped] == 0)
    h = x + y  # the enclosing residual block
    assert torch.equal(h[dropped], x[dropped])
    assert (y[~dropped].abs().sum(-1) > 0).all()


def test_aux_loss_is_weighted_balance_plus_z() -> None:
    torch.manual_seed(0)
    layer = MoELayer(16, 32, 4, top_k=2, balance_weight=0.3, z_loss_weight=0.1)
    x = torch.randn(3, 9, 16)
    _, aux = layer(x)
    r = layer.last_router_output
    assert r is not None
    assert r.logits is not None
    expected = (
        0.3 * layer.balance_loss() + 0.1 * torch.logsumexp(r.logits.float(), -1).square().mean()
    )
    torch.testing.assert_close(aux, expected)
    assert layer.balance_loss().item() == pytest.approx(layer.router.balance_loss(r).item())
    aux.backward()
    assert layer.router.gate.weight.grad is not None


def test_hash_layer_uses_token_ids_and_has_zero_balance_loss() -> None:
    torch.manual_seed(0)
    layer = MoELayer(16, 32, 8, router="hash", top_k=2)
    x = torch.randn(2, 10, 16)
    ids = torch.randint(0, 500, (2, 10))
    y1, aux = layer(x, ids)
    assert aux.item() == 0.0
    idx1 = layer.last_router_output.expert_index.clone()  # type: ignore[union-attr]
    layer(torch.randn(2, 10, 16), ids)
    assert torch.equal(idx1, layer.last_router_output.expert_index)  # type: ignore[union-attr]
    assert y1.shape == x.shape


def test_float64_runs_through_batched_fallback() -> None:
    torch.manual_seed(0)
    layer = MoELayer(8, 12, 4, top_k=2).double()
    x = torch.randn(20, 8, dtype=torch.float64)
    y, _ = layer(x)
    torch.testing.assert_close(y, _loop_reference(layer, x), rtol=1e-12, atol=1e-12)
    r = layer.router(x)
    with pytest.raises(ValueError, match="grouped_mm"):
        moe_dispatch(
            x, r.expert_index, r.gates, r.keep, layer.gate_up_proj, layer.down_proj, "grouped_mm"
        )


def test_all_dropped_and_empty_inputs() -> None:
    layer = MoELayer(8, 16, 4, top_k=1)
    x = torch.randn(5, 8)
    r = layer.router(x)
    keep = torch.zeros_like(r.keep)
    y = moe_dispatch(x, r.expert_index, r.gates, keep, layer.gate_up_proj, layer.down_proj)
    assert torch.equal(y, torch.zeros_like(x))
    y0, _ = layer(torch.randn(0, 8))
    assert y0.shape == (0, 8)


def test_layer_accepts_router_instance_and_rejects_bad_config() -> None:
    layer = MoELayer(16, 32, 6, router=SwitchRouter(16, 6, top_k=3, capacity_factor=1.0))
    assert layer.top_k == 3
    y, _ = layer(torch.randn(4, 16))
    assert y.shape == (4, 16)
    with pytest.raises(ValueError, match="must equal num_experts"):
        MoELayer(16, 32, 6, router=HashRouter(4))
    with pytest.raises(ValueError, match="top_k must be <= num_experts"):
        MoELayer(16, 32, 4, top_k=5)
    with pytest.raises(ValueError, match="dispatch must be one of"):
        MoELayer(16, 32, 4, dispatch="cuda-magic")
    with pytest.raises(ValueError, match="router must be"):
        MoELayer(16, 32, 4, router="expert-choice")
    with pytest.raises(ValueError, match="no capacity_factor"):
        MoELayer(16, 32, 4, router="hash", capacity_factor=1.0)
    with pytest.raises(ValueError, match="d_model=16"):
        MoELayer(16, 32, 4)(torch.randn(3, 15))


def test_naive_loop_variants_agree() -> None:
    torch.manual_seed(0)
    layer = MoELayer(8, 12, 4, top_k=2).double()
    x = torch.randn(20, 8, dtype=torch.float64)
    r = layer.router(x)
    args = (x, r.expert_index, r.gates, r.keep, layer.gate_up_proj, layer.down_proj)
    torch.testing.assert_close(naive_moe(*args, unbind_weights=True), naive_moe(*args))
