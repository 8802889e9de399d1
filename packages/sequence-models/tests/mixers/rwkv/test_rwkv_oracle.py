"""``RWKVLoop`` against HF transformers' ``RwkvForCausalLM`` (random tiny model, built locally)."""

from __future__ import annotations

import pytest
import torch

from seedbed.sequence_models import RWKVLoop

pytestmark = pytest.mark.oracle


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def hf_and_ours():  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.RwkvConfig(
        vocab_size=61, context_length=128, hidden_size=32, num_hidden_layers=2,
        attention_hidden_size=32, intermediate_size=64,
    )  # fmt: skip
    hf = transformers.RwkvForCausalLM(cfg).eval()
    with torch.no_grad():  # move the decays/bonuses/mixes off their (degenerate) init values
        for name, p in hf.named_parameters():
            if "time_" in name:
                p.add_(0.5 * torch.randn_like(p))
    ours = []
    for block in hf.rwkv.blocks:
        loop = RWKVLoop(32, d_ffn=64, d_att=32, chunk_size=16).eval()
        loop.load_state_dict(
            {k: v for k, v in block.state_dict().items() if not k.startswith("pre_ln")}
        )
        ours.append(loop)
    return hf, ours


def _our_logits(hf, ours, ids):  # type: ignore[no-untyped-def]
    h = hf.rwkv.blocks[0].pre_ln(hf.rwkv.embeddings(ids))  # HF's layer-0 embedding norm
    for loop in ours:
        h = loop(h)
    return hf.head(hf.rwkv.ln_out(h))


@pytest.mark.parametrize("mode", ["chunk", "recurrent", "naive"])
def test_rwkv_loop_matches_hf_whole_sequence(hf_and_ours, mode: str) -> None:  # type: ignore[no-untyped-def]
    hf, ours = hf_and_ours
    ids = torch.randint(0, 61, (2, 63), generator=torch.Generator().manual_seed(1))
    for loop in ours:
        loop.mode = mode
    with torch.no_grad():
        assert rel_err(_our_logits(hf, ours, ids), hf(ids).logits) < 1e-5
    for loop in ours:
        loop.mode = "chunk"


def test_rwkv_loop_matches_hf_step_mode_batch1(hf_and_ours) -> None:  # type: ignore[no-untyped-def]
    """Token by token with carried state, at batch 1 (HF's batched one-token path broadcasts
    its state wrongly)."""
    hf, ours = hf_and_ours
    ids = torch.randint(0, 61, (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, state = [], None
        for t in range(ids.shape[1]):
            out = hf(ids[:, t : t + 1], state=state, use_cache=True)
            state = out.state
            ref.append(out.logits[:, 0])
        states = [None] * len(ours)
        got = []
        for t in range(ids.shape[1]):
            h = hf.rwkv.blocks[0].pre_ln(hf.rwkv.embeddings(ids[:, t]))
            for i, loop in enumerate(ours):
                h, states[i] = loop.step(h, states[i])
            got.append(hf.head(hf.rwkv.ln_out(h)))
    assert rel_err(torch.stack(got, 1), torch.stack(ref, 1)) < 1e-5
    # and the final WKV state is HF's (num, den, max) for each layer
    for i, s in enumerate(states):
        assert s is not None
        for j, name in enumerate(("num", "den", "max")):
            assert rel_err(s.wkv[:, j], state[2 + j][:, :, i]) < 1e-5, name
