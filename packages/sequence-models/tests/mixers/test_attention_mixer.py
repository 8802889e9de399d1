"""AttentionMixer options beyond the shared contract (tests/mixers/test_contract.py)."""

from __future__ import annotations

import pytest
import torch

from seedbed.sequence_models.mixers.attention import AttentionMixer

D = 32


def _last_token_after_shuffle(m: AttentionMixer, x: torch.Tensor) -> torch.Tensor:
    """Output at the last position, for x and for x with its earlier tokens reversed."""
    shuffled = torch.cat([x[:, :-1].flip(1), x[:, -1:]], dim=1)
    with torch.no_grad():
        return torch.stack([m(x)[:, -1], m(shuffled)[:, -1]])


def test_without_rope_attention_ignores_token_order() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 17, D)
    plain = _last_token_after_shuffle(AttentionMixer(D, 2, rope_theta=None).eval(), x)
    torch.testing.assert_close(plain[0], plain[1], rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    rotated = _last_token_after_shuffle(AttentionMixer(D, 2).eval(), x)
    assert (rotated[0] - rotated[1]).abs().max() > 1e-3


@pytest.mark.parametrize("length", [1, 63], ids=lambda n: f"L{n}")
def test_without_rope_stream_and_step_equal_whole_sequence(length: int) -> None:
    torch.manual_seed(0)
    m = AttentionMixer(D, 2, rope_theta=None).eval()
    x = torch.randn(2, length, D)
    with torch.no_grad():
        y = m(x)
        first = min(5, length)
        a, state = m.stream(x[:, :first], None)
        b, state = m.stream(x[:, first:], state) if length > first else (a[:, :0], state)
        torch.testing.assert_close(torch.cat([a, b], dim=1), y, rtol=1e-5, atol=1e-6)
        state, steps = m.init_state(2), []
        for t in range(length):
            o, state = m.step(x[:, t], state)
            steps.append(o)
        torch.testing.assert_close(torch.stack(steps, dim=1), y, rtol=1e-5, atol=1e-6)
