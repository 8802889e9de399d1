from __future__ import annotations

import numpy as np
import pytest
import torch

from seedbed.memory_store import HierarchicalMemory
from seedbed.memory_store.infinite_context import InfiniteContextConfig, InfiniteContextModel

TINY = dict(
    d_model=32,
    n_layers=2,
    n_heads=2,
    chunk_size=16,
    top_k=4,
    hot_capacity=24,
    latent_dim=8,
    growth=32.0,
)


def _tokens(b: int, l: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, l), generator=torch.Generator().manual_seed(seed))


def test_forward_writes_memory_and_retrieves_only_the_past() -> None:
    torch.manual_seed(0)
    model = InfiniteContextModel(InfiniteContextConfig(**TINY))
    model.reset_memory(2)
    toks = _tokens(2, 48)
    logits, state, info = model(toks[:, :16])
    assert logits.shape == (2, 16, 256)
    assert len(state) == 2
    assert (info["retrieved_next"] == -1).all()  # nothing in memory yet
    # positions 0..14 stored; 15 waits for the token that follows it
    assert [len(m) for m in model.memories] == [15, 15]
    logits, state, info = model(toks[:, 16:32], state)
    got = info["retrieved_next"]
    assert (got >= 0).all()
    for b in range(2):  # retrieved entries were followed by tokens 1..15 of the first chunk
        assert set(got[b].unique().tolist()) <= set(toks[b, 1:16].tolist())
    meta = model.memories[0].hot.get([15])[1][0]
    assert meta == {"tok": int(toks[0, 15]), "next": int(toks[0, 16])}  # the pending entry
    model(toks[:, 32:48], state)
    assert model.memory_size == 2 * 47
    assert len(model.memories[0].cold) == 47 - 24  # cold tier in use
    assert model.memories[0].compressor is not None
    assert model.memories[0].compressor.frozen


def test_stored_vectors_are_the_attention_inputs() -> None:
    torch.manual_seed(0)
    cfg = {**TINY, "latent_dim": None, "n_layers": 1, "memory_after": 0}
    model = InfiniteContextModel(InfiniteContextConfig(**cfg))
    model.reset_memory(1)
    toks = _tokens(1, 16)
    model(toks)
    expected = model.attn_norm(model.embed(toks))[0]  # memory_after=0: right after the embedding
    torch.testing.assert_close(model.memories[0].vectors_of(np.arange(15)), expected[:15].detach())
    metas = model.memories[0].hot.get(np.arange(15))[1]
    assert [m["tok"] for m in metas] == toks[0, :15].tolist()
    assert [m["next"] for m in metas] == toks[0, 1:].tolist()
    pending = model.pending_tensors()
    assert pending["has"].tolist() == [True]
    assert int(pending["tok"][0]) == int(toks[0, 15])


def test_ablation_has_the_same_parameters_and_no_retrieval() -> None:
    torch.manual_seed(0)
    a = InfiniteContextModel(InfiniteContextConfig(**TINY))
    torch.manual_seed(0)
    b = InfiniteContextModel(InfiniteContextConfig(**{**TINY, "use_memory": False}))
    assert [(n, p.shape) for n, p in a.named_parameters()] == [
        (n, p.shape) for n, p in b.named_parameters()
    ]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    _, _, info = b(_tokens(2, 16))
    assert (info["retrieved_next"] == -1).all()
    assert b.memory_size == 0


def test_memory_cap_drops_oldest() -> None:
    model = InfiniteContextModel(InfiniteContextConfig(**{**TINY, "max_memory": 40}))
    model.reset_memory(1)
    state = None
    for i in range(4):
        _, state, _ = model(_tokens(1, 16, i), state)
    mem = model.memories[0]
    assert len(mem) == 40
    assert mem.ids.tolist() == list(range(23, 63))  # 63 stored (one pending), oldest 23 dropped


def test_state_roundtrip_and_validation() -> None:
    model = InfiniteContextModel(InfiniteContextConfig(**TINY))
    model.reset_memory(2)
    _, state, _ = model(_tokens(2, 16))
    again = model.state_from_tensors(model.state_tensors(state))
    for s, t in zip(state, again):
        for k, v in s.tensors().items():
            torch.testing.assert_close(t.tensors()[k], v)
    with pytest.raises(ValueError, match="reset_memory"):
        model(_tokens(3, 16))
    with pytest.raises(ValueError, match="n_heads"):
        InfiniteContextConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="memory_after"):
        InfiniteContextConfig(n_layers=2, memory_after=3)
    with pytest.raises(ValueError, match="latent_dim"):
        InfiniteContextConfig(d_model=32, latent_dim=32)
    assert isinstance(model.new_memory(), HierarchicalMemory)
