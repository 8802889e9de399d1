"""The shared mixer contract (DESIGN.md) for every mixer module.

forward (B, L, D) -> (B, L, D); streaming over uneven chunks with the carried state equals
the whole sequence; ``step`` token by token equals it again; every ``mode`` agrees. Odd
lengths and chunk sizes that do not divide them; fp32 within 1e-5 relative.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from seedbed.sequence_models import MIXERS, build_mixer

D = 32
KWARGS: dict[str, dict[str, Any]] = {
    "attention": {"n_heads": 2},
    "retnet": {"n_heads": 4, "chunk_size": 16},
    "mamba": {"d_state": 4, "chunk_size": 16},
    "mamba2": {"d_state": 8, "head_dim": 16, "chunk_size": 16},
    "hyena": {"l_max": 64, "filter_order": 16},
    "rwkv": {"chunk_size": 16},
    "rwkv_block": {"chunk_size": 16},
}
RTOL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def make(name: str, **over: Any):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return build_mixer(name, D, **{**KWARGS[name], **over}).eval()


def test_every_registered_mixer_is_covered() -> None:
    assert set(KWARGS) == set(MIXERS)


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("length", [63, 127], ids=lambda n: f"L{n}")
def test_stream_and_step_equal_whole_sequence(name: str, length: int) -> None:
    m = make(name)
    x = torch.randn(2, length, D, generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        y = m(x)
        assert y.shape == x.shape
        cuts = [20, 1, length - 21 - 11, 11]
        outs, state = [], None
        for chunk in x.split(cuts, dim=1):
            o, state = m.stream(chunk, state)
            outs.append(o)
        assert rel_err(torch.cat(outs, dim=1), y) < RTOL
        steps, state = [], m.init_state(2)
        for t in range(length):
            o, state = m.step(x[:, t], state)
            steps.append(o)
        assert rel_err(torch.stack(steps, dim=1), y) < RTOL


@pytest.mark.parametrize("name", [n for n in MIXERS if n != "attention"])
@pytest.mark.parametrize("mode", ["naive", "recurrent"])
def test_modes_agree(name: str, mode: str) -> None:
    m = make(name)
    x = torch.randn(2, 63, D, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = m(x)
        m.mode = mode
        assert rel_err(m(x), ref) < RTOL
        _, s_mode = m.stream(x[:, :30])
        m.mode = "chunk"
        _, s_ref = m.stream(x[:, :30])
    ref_tensors = s_ref.tensors()
    for k, a in s_mode.tensors().items():
        if k in type(s_mode).unbatched:  # caches (Hyena's filter taps) may differ in length
            n = min(a.shape[-1], ref_tensors[k].shape[-1])
            assert rel_err(a[..., :n], ref_tensors[k][..., :n]) < RTOL, k
        else:
            assert rel_err(a, ref_tensors[k]) < RTOL, k


@pytest.mark.parametrize("name", list(MIXERS))
def test_stream_does_not_modify_the_given_state(name: str) -> None:
    m = make(name)
    x = torch.randn(1, 10, D)
    with torch.no_grad():
        _, s = m.stream(x)
        before = {k: v.clone() for k, v in s.tensors().items()}
        m.stream(x, s)
        m.step(x[:, 0], s)
    for k, v in s.tensors().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("name", list(MIXERS))
def test_state_helpers(name: str) -> None:
    m = make(name)
    x = torch.randn(3, 5, D, requires_grad=True)
    _, s = m.stream(x)
    assert s.batch_size == 3
    d = s.detach()
    assert all(not t.requires_grad for t in d.tensors().values())
    assert type(d) is type(s)
    c = s.to(torch.float64)
    assert all(t.dtype == torch.float64 for t in c.tensors().values())


@pytest.mark.parametrize("name", list(MIXERS))
def test_gradients_flow_through_the_streamed_state(name: str) -> None:
    """Training over chunks with a carried (non-detached) state = training on the whole."""
    m = make(name)
    x = torch.randn(1, 40, D, generator=torch.Generator().manual_seed(5))
    m(x).square().sum().backward()
    ref = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    a, s = m.stream(x[:, :17])
    b, _ = m.stream(x[:, 17:], s)
    torch.cat([a, b], 1).square().sum().backward()
    for n, p in m.named_parameters():
        if n in ref:
            assert rel_err(p.grad, ref[n]) < 1e-4, n


@pytest.mark.parametrize("name", list(MIXERS))
def test_float64_and_dtype_follow_input(name: str) -> None:
    m = make(name).double()
    x = torch.randn(2, 9, D, dtype=torch.float64)
    y, _s = m.stream(x)
    assert y.dtype == torch.float64
    y1, _ = m.step(x[:, 0])
    assert y1.dtype == torch.float64


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", list(MIXERS))
def test_wrong_model_dim_is_a_clear_error(name: str) -> None:
    m = make(name)
    with pytest.raises(ValueError, match=rf"model dim {D}.*got last dimension 31"):
        m(torch.randn(2, 8, D - 1))
    with pytest.raises(ValueError, match=rf"model dim {D}"):
        m.stream(torch.randn(2, 8, D + 1))
    with pytest.raises(ValueError, match=rf"\(B, {D}\)"):
        m.step(torch.randn(2, D + 1))
    with pytest.raises(ValueError, match=r"\(B, L, 32\)"):
        m(torch.randn(8, D))
    with pytest.raises(TypeError, match="floating"):
        m(torch.ones(2, 8, D, dtype=torch.long))


@pytest.mark.parametrize("name", list(MIXERS))
def test_empty_sequence_is_a_clear_error(name: str) -> None:
    m = make(name)
    with pytest.raises(ValueError, match="L=0"):
        m(torch.randn(2, 0, D))
    with pytest.raises(ValueError, match="L=0"):
        m.stream(torch.randn(2, 0, D), m.init_state(2))


@pytest.mark.parametrize("name", list(MIXERS))
def test_state_from_another_mixer_is_a_clear_error(name: str) -> None:
    m = make(name)
    other = make("mamba" if name != "mamba" else "retnet")
    foreign = other.init_state(2)
    with pytest.raises(
        TypeError, match=rf"expects a {m.state_cls.__name__}.*got {type(foreign).__name__}"
    ):
        m.stream(torch.randn(2, 4, D), foreign)
    with pytest.raises(TypeError, match=m.state_cls.__name__):
        m.step(torch.randn(2, D), foreign)
    with pytest.raises(TypeError, match=m.state_cls.__name__):
        m.stream(torch.randn(2, 4, D), {"not": "a state"})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(MIXERS))
def test_state_for_another_batch_size_is_a_clear_error(name: str) -> None:
    m = make(name)
    with torch.no_grad():
        _, s = m.stream(torch.randn(3, 4, D))
    with pytest.raises(ValueError, match="batch size 3 but an input of batch size 2"):
        m.stream(torch.randn(2, 4, D), s)
    with pytest.raises(ValueError, match="batch size 3 but an input of batch size 2"):
        m.step(torch.randn(2, D), s)


def test_unknown_mixer_and_mode() -> None:
    with pytest.raises(ValueError, match="unknown mixer 'lstm'"):
        build_mixer("lstm", D)
    with pytest.raises(ValueError, match="mode must be one of"):
        build_mixer("retnet", D, mode="fused")
