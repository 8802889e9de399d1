"""Hyena's implicit filter and operator specifics (the generic contract is in test_contract)."""

from __future__ import annotations

import pytest
import torch

from seedbed.sequence_models import HyenaFilter, HyenaOperator
from seedbed.sequence_models.mixers.hyena import direct_causal_conv


def test_filter_is_a_decaying_function_of_the_lag() -> None:
    torch.manual_seed(0)
    f = HyenaFilter(8, l_max=128)
    k = f.kernel(128)
    assert k.shape == (8, 128)
    # the taps of any lag subset are the same function values (streams may index lags)
    lags = torch.tensor([0, 5, 127, 300])
    k_sub = f.taps(lags)
    assert torch.allclose(k_sub[:, :3], k[:, [0, 5, 127]], atol=1e-6)
    # the exponential window: decay rates span [-log(1e-2)/1.5, -log(1e-2)/0.3]
    assert f.deltas.abs().min() == pytest.approx(
        -torch.log(torch.tensor(1e-2)).item() / 1.5, rel=1e-5
    )
    window = torch.exp(-torch.tensor(127 / 127) * f.deltas.abs())
    assert (window < 0.05).all()


def test_filter_forward_is_the_causal_conv_plus_skip() -> None:
    torch.manual_seed(0)
    f = HyenaFilter(4, l_max=32).double()
    u = torch.randn(2, 4, 32, dtype=torch.float64)
    ref = direct_causal_conv(u, f.kernel(32), f.bias)
    assert (f(u) - ref).abs().max() / ref.abs().max() < 1e-10
    with pytest.raises(ValueError, match=r"\(B, 4, L\)"):
        f(torch.randn(2, 3, 32))
    with pytest.raises(ValueError, match="L=0"):
        f(torch.randn(2, 4, 0))


@pytest.mark.parametrize("order", [2, 3])
def test_operator_orders_and_long_streams(order: int) -> None:
    torch.manual_seed(0)
    op = HyenaOperator(16, l_max=32, order=order, filter_order=8).eval()
    x = torch.randn(1, 50, 16)  # longer than l_max: the filter is defined for every lag
    with torch.no_grad():
        y = op(x)
        a, s = op.stream(x[:, :31])
        b, s = op.stream(x[:, 31:], s)
    assert s.offset == 50
    assert s.history.shape == (1, (order - 1) * 16, 50)
    assert (torch.cat([a, b], 1) - y).abs().max() / y.abs().max() < 1e-5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="order must be an int >= 2"):
        HyenaOperator(8, l_max=16, order=1)
    with pytest.raises(ValueError, match="emb_dim must be an odd int"):
        HyenaFilter(8, l_max=16, emb_dim=4)
