from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seedbed.memory_store.infinite_context import (
    ChunkWiseRetrainer,
    InfiniteContextConfig,
    InfiniteContextModel,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    stdlib_corpus,
)

TINY = dict(
    d_model=32,
    n_layers=1,
    n_heads=2,
    chunk_size=16,
    top_k=4,
    hot_capacity=40,
    latent_dim=8,
    growth=32.0,
)


@pytest.fixture(scope="module")
def corpus() -> np.ndarray:
    return stdlib_corpus(60_000)


def _trainer(data: np.ndarray, seed: int = 0, **cfg: object) -> ChunkWiseRetrainer:
    torch.manual_seed(seed)
    model = InfiniteContextModel(InfiniteContextConfig(**{**TINY, **cfg}))
    return ChunkWiseRetrainer(model, data, batch_size=3, lr=3e-3, warmup=2)


def test_train_chunks_carry_state_and_fill_memory(corpus: np.ndarray) -> None:
    tr = _trainer(corpus)
    losses = tr.train(6, progress=False)
    assert len(losses) == 6
    assert all(math.isfinite(v) for v in losses)
    assert tr.step == 6
    assert tr.state is not None
    # 6 chunks x 16 tokens per stream, the last one waiting for its next token
    assert [len(m) for m in tr.model.memories] == [95, 95, 95]
    assert tr.streams.positions.tolist() == [
        (b * len(corpus) // 3 + 96) % len(corpus) for b in range(3)
    ]


def test_evaluate_reports_and_keeps_training_memories(corpus: np.ndarray) -> None:
    tr = _trainer(corpus)
    tr.train(3, progress=False)
    before = [m.ids.tolist() for m in tr.model.memories]
    held = corpus[-5_000:]
    m = evaluate(tr.model, held, batch_size=2, max_chunks=5)
    assert set(m) == {"loss", "perplexity", "retrieval_hit_rate", "memory_size", "tokens"}
    assert m["perplexity"] == pytest.approx(math.exp(m["loss"]))
    assert 0.0 <= m["retrieval_hit_rate"] <= 1.0
    assert m["memory_size"] == 2 * (5 * 16 - 1)
    assert m["tokens"] == 2 * 5 * 16
    assert [mem.ids.tolist() for mem in tr.model.memories] == before
    assert tr.model.training
    off = _trainer(corpus, use_memory=False)
    m_off = evaluate(off.model, held, batch_size=2, max_chunks=5)
    assert math.isnan(m_off["retrieval_hit_rate"])
    assert m_off["memory_size"] == 0


def test_checkpoint_resume_continues_exactly(corpus: np.ndarray, tmp_path: Path) -> None:
    """Resume = same losses, same memory contents; a search after reload returns the same ids."""
    tr = _trainer(corpus)
    tr.train(4, progress=False)  # memories: 64 each, 40 hot + 24 compressed cold
    save_checkpoint(tmp_path / "ck", tr)
    resumed = load_checkpoint(tmp_path / "ck", corpus)
    q = torch.randn(5, 32, generator=torch.Generator().manual_seed(1))
    for a, b in zip(tr.model.memories, resumed.model.memories):
        assert a.ids.tolist() == b.ids.tolist()
        assert len(a.cold) == len(b.cold) > 0
        ra, rb = a.search(q, 6), b.search(q, 6)
        assert torch.equal(ra.ids, rb.ids)
        assert ra.metadata == rb.metadata
        torch.testing.assert_close(ra.vectors, rb.vectors, atol=0, rtol=0)
    assert resumed.step == 4
    assert resumed.losses == tr.losses
    cont_a = tr.train(3, progress=False)
    cont_b = resumed.train(3, progress=False)
    assert cont_a == pytest.approx(cont_b, rel=1e-6, abs=1e-6)
    for a, b in zip(tr.model.memories, resumed.model.memories):
        assert a.ids.tolist() == b.ids.tolist()
        torch.testing.assert_close(a.vectors_of(a.ids), b.vectors_of(b.ids), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="corpus"):
        load_checkpoint(tmp_path / "ck", corpus[:-1])


def test_trainer_validation(corpus: np.ndarray) -> None:
    model = InfiniteContextModel(InfiniteContextConfig(**TINY))
    with pytest.raises(ValueError, match="lr"):
        ChunkWiseRetrainer(model, corpus, lr=0)
    with pytest.raises(ValueError, match="steps"):
        ChunkWiseRetrainer(model, corpus).train(-1)
