"""``MixerLM``: any mixer stacked with RMSNorm + SwiGLU + residuals; stream/step == forward."""

from __future__ import annotations

import pytest
import torch

from seedbed.core_layers import RMSNorm, SwiGLU
from seedbed.sequence_models import MIXERS, LMConfig, LMState, MixerLM

V = 97


def _lm(mixer: str, **kw):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    mk = {"l_max": 64} if mixer == "hyena" else {}
    return MixerLM(
        LMConfig(vocab_size=V, d_model=32, n_layers=2, mixer=mixer, mixer_kwargs=mk, **kw)
    ).eval()


def _check_stream_and_step(lm: MixerLM, ids: torch.Tensor, ref: torch.Tensor) -> LMState:
    """Two streamed chunks (13 + rest), then token-by-token steps, both equal ``ref``;
    returns the state after the stream."""
    a, s = lm.stream(ids[:, :13])
    assert s.offset == 13
    b, s = lm.stream(ids[:, 13:], s)
    assert torch.allclose(torch.cat([a, b], 1), ref, atol=1e-5, rtol=1e-5)
    st, outs = None, []
    for t in range(ids.shape[1]):
        o, st = lm.step(ids[:, t], st)
        outs.append(o)
    assert torch.allclose(torch.stack(outs, 1), ref, atol=1e-5, rtol=1e-5)
    return s


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_stream_and_step_equal_forward(mixer: str) -> None:
    lm = _lm(mixer)
    ids = torch.randint(0, V, (2, 37), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = lm(ids)
        assert ref.shape == (2, 37, V)
        _check_stream_and_step(lm, ids, ref)


@pytest.mark.parametrize("mixer", ["attention", "mamba"])
def test_absolute_positions_stream_step_and_limit(mixer: str) -> None:
    lm = _lm(mixer, max_position_embeddings=40)
    assert lm.embed_pos is not None
    assert lm.embed_pos.weight.shape == (40, 32)
    ids = torch.randint(0, V, (2, 37), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = lm(ids)
        s = _check_stream_and_step(lm, ids, ref)
        assert s.offset == 37
        lm.embed_pos.weight.zero_()  # the positions are used
        assert not torch.allclose(lm(ids), ref, atol=1e-4)
        with pytest.raises(
            ValueError, match=r"positions 0\.\.40 exceed max_position_embeddings=40"
        ):
            lm(torch.zeros(1, 41, dtype=torch.long))
        with pytest.raises(ValueError, match=r"positions 37\.\.40 exceed"):
            lm.stream(ids[:, :4], s)
        _, s40 = lm.stream(torch.zeros(2, 40, dtype=torch.long))
        with pytest.raises(ValueError, match=r"positions 40\.\.40 exceed"):
            lm.step(ids[:, 0], s40)
    with pytest.raises(ValueError, match="max_position_embeddings must be an int >= 0"):
        LMConfig(vocab_size=V, max_position_embeddings=-1)


def test_uses_core_layers_blocks_and_ties_weights() -> None:
    lm = _lm("mamba")
    assert isinstance(lm.norm, RMSNorm)
    assert isinstance(lm.layers[0].mlp, SwiGLU)
    assert lm.lm_head.weight is lm.embed.weight
    untied = _lm("mamba", tie_embeddings=False)
    assert untied.lm_head.weight is not untied.embed.weight
    no_mlp = _lm("retnet", d_ffn=0)
    assert no_mlp.layers[0].mlp is None
    assert no_mlp.num_parameters() < lm.num_parameters()


def test_training_step_reduces_loss() -> None:
    lm = _lm("rwkv").train()
    ids = torch.randint(0, V, (4, 16), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(lm.parameters(), 3e-3)
    losses = []
    for _ in range(15):
        logits = lm(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_bad_config_and_inputs() -> None:
    with pytest.raises(ValueError, match="mixer must be one of"):
        LMConfig(vocab_size=10, mixer="transformer-xl")
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        LMConfig(vocab_size=0)
    with pytest.raises(ValueError, match="d_ffn"):
        LMConfig(vocab_size=10, d_ffn=-1)
    lm = _lm("mamba2")
    with pytest.raises(TypeError, match="integer token ids"):
        lm(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 97\)"):
        lm(torch.full((2, 5), V))
    with pytest.raises(ValueError, match=r"shape \(B, L\)"):
        lm(torch.zeros(2, 0, dtype=torch.long))
    _, s = lm.stream(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="batch size 3"):
        lm.stream(torch.zeros(2, 4, dtype=torch.long), s)
    with pytest.raises(TypeError, match="LMState"):
        lm.step(torch.zeros(3, dtype=torch.long), s.layers[0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layers"):
        lm.step(torch.zeros(3, dtype=torch.long), LMState(layers=s.layers[:1]))


def test_embedding_init_and_logit_scale() -> None:
    lm = _lm("attention")
    assert abs(lm.embed.weight.std().item() - 0.02) < 0.002  # GPT-2's / Zoology's init
    wide = _lm("attention", embed_std=1.0, logit_scale=0.5)
    assert abs(wide.embed.weight.std().item() - 1.0) < 0.1
    wide.load_state_dict(lm.state_dict())  # same weights, half the logits
    ids = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(wide(ids), 0.5 * lm(ids))
    for bad in (0.0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="embed_std must be a finite number > 0"):
            LMConfig(vocab_size=V, embed_std=bad)
    with pytest.raises(ValueError, match="logit_scale must be a finite number > 0"):
        LMConfig(vocab_size=V, logit_scale=0)
