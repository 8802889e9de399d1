from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from seedbed.memory_store import (
    AsyncFaissVectorStore,
    FaissVectorStore,
    HierarchicalMemory,
    StreamingCompressor,
    VectorStore,
)


def _data(n: int = 1200, d: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g) @ torch.randn(6, d, generator=g) + 0.02 * torch.randn(
        n, d, generator=g
    )


CONFIGS = {
    "memory": dict(),
    "faiss": dict(backend="faiss", kind="flat"),
    "async": dict(use_async=True, kind="flat"),
    "compressed": dict(compressor="yes"),
    "compressed-async-hnsw": dict(compressor="yes", use_async=True, kind="hnsw", ef_search=256),
}


def _make(cfg: dict[str, Any], metric: str = "dot", hot: int = 300) -> HierarchicalMemory:
    kw = dict(cfg)
    if kw.pop("compressor", None):
        kw["compressor"] = StreamingCompressor(32, 8, growth=64.0)
    return HierarchicalMemory(32, metric=metric, hot_capacity=hot, fit_steps=150, **kw)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_tiers_search_matches_exact(name: str) -> None:
    x = _data()
    mem = _make(CONFIGS[name])
    for chunk in x.split(100):
        ids = mem.add(chunk, metadata=[{"n": 1}] * len(chunk))
        assert isinstance(ids, np.ndarray)
    assert len(mem) == 1200
    assert len(mem.hot) == 300
    assert len(mem.cold) == 900
    assert mem.ids.tolist() == list(range(1200))
    q = x[::97] + 0.01
    res = mem.search(q, 5)
    exact = (q @ x.T).topk(5).indices
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(res.ids.tolist(), exact.tolist())])
    assert overlap >= (0.9 if "compressed" in name else 1.0)
    assert res.vectors.shape == (len(q), 5, 32)
    assert res.metadata[0][0] == {"n": 1}
    # returned vectors are the stored ones (decoded for the compressed cold tier) and the
    # scores are their inner products with the query, on one scale for both tiers
    torch.testing.assert_close(
        res.scores, torch.einsum("qd,qkd->qk", q, res.vectors), atol=2e-3, rtol=1e-4
    )
    exact_vecs = x[res.ids]
    err = (res.vectors - exact_vecs).norm(dim=-1) / exact_vecs.norm(dim=-1)
    assert float(err.max()) < (0.05 if "compressed" in name else 1e-6)
    mem.close()


def test_hot_tier_is_exact_and_recent_first() -> None:
    x = _data(500)
    mem = HierarchicalMemory(
        32, metric="l2", compressor=StreamingCompressor(32, 4), hot_capacity=100, fit_steps=50
    )
    mem.add(x)
    assert sorted(mem.hot.ids.tolist()) == list(range(400, 500))  # the most recent stay exact
    res = mem.search(x[450:451], 1, filter=lambda m: True)
    assert res.ids.tolist() == [[450]]
    torch.testing.assert_close(res.vectors[0, 0], x[450])
    assert mem.compressor.frozen  # codes exist now


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_other_metrics(metric: str) -> None:
    x = _data(400)
    kw: dict[str, Any] = {} if metric == "cosine" else {"compressor": StreamingCompressor(32, 8)}
    mem = HierarchicalMemory(32, metric=metric, hot_capacity=50, fit_steps=150, **kw)
    mem.add(x)
    res = mem.search(x[:4], 3)
    assert res.ids[:, 0].tolist() == [0, 1, 2, 3]
    if metric == "l2":
        d = ((x[:4, None, :] - res.vectors) ** 2).sum(-1)
        torch.testing.assert_close(res.scores, d, atol=1e-3, rtol=1e-3)
        assert bool((res.scores[:, 1:] >= res.scores[:, :-1]).all())
    with pytest.raises(ValueError, match="cosine"):
        HierarchicalMemory(32, metric="cosine", compressor=StreamingCompressor(32, 8))


def test_delete_len_contains() -> None:
    mem = _make(CONFIGS["compressed"], hot=100)
    mem.add(_data(400))
    assert mem.delete([0, 399, 10_000]) == 2  # one cold, one hot, one unknown
    assert len(mem) == 398
    assert 0 not in mem
    assert 399 not in mem
    assert 5 in mem
    res = mem.search(_data(400)[:1], 400)
    assert 0 not in res.ids.tolist()[0]
    assert int((res.ids >= 0).sum()) == 398


def test_dual_api_blocks_in_sync_code_and_returns_tasks_in_a_loop(tmp_path: Path) -> None:
    x = _data(300)
    mem = _make(CONFIGS["async"], metric="l2", hot=100)
    assert isinstance(mem.add(x[:100]), np.ndarray)  # sync: blocks, returns the result

    async def main() -> None:
        t_add = mem.add(x[100:300])
        assert isinstance(t_add, asyncio.Task)
        assert (await t_add).tolist() == list(range(100, 300))
        t_search = mem.search(x[:2], 1)
        assert isinstance(t_search, asyncio.Task)
        assert (await t_search).ids.tolist() == [[0], [1]]
        t_del = mem.delete([0])
        assert isinstance(t_del, asyncio.Task)
        assert await t_del == 1
        t_save = mem.save(tmp_path / "m")
        assert isinstance(t_save, asyncio.Task)
        await t_save
        t_load = HierarchicalMemory.load(tmp_path / "m")
        assert isinstance(t_load, asyncio.Task)
        loaded = await t_load
        assert len(loaded) == 299
        assert isinstance(loaded.cold, AsyncFaissVectorStore)
        # explicit coroutines
        await mem.aadd(x[:1], ids=[5000])
        assert (await mem.asearch(x[:1], 1)).ids.tolist() in ([[5000]], [[0]])
        assert await mem.adelete([5000]) == 1
        await mem.save_async(tmp_path / "m2")
        assert len(await HierarchicalMemory.load_async(tmp_path / "m2")) == 299
        # bad input raises at the call, not inside the task
        with pytest.raises(ValueError, match="k must be"):
            mem.search(x[:1], 0)
        loaded.close()

    asyncio.run(main())
    assert len(mem) == 299
    mem.close()


def test_concurrent_async_adds_and_searches_stay_consistent() -> None:
    x = _data(2000)
    mem = _make(CONFIGS["compressed-async-hnsw"], hot=64)

    async def main() -> None:
        async def writer(w: int) -> None:
            for i in range(w * 250, (w + 1) * 250, 25):
                await mem.aadd(x[i : i + 25], ids=np.arange(i, i + 25))

        async def reader() -> None:
            for _ in range(30):
                res = await mem.asearch(x[:3], 4)
                for row in res.ids.tolist():  # no id twice in one result, even mid-move
                    valid = [i for i in row if i >= 0]
                    assert len(set(valid)) == len(valid)

        await asyncio.gather(*(writer(w) for w in range(8)), *(reader() for _ in range(4)))

    asyncio.run(main())
    assert len(mem) == 2000
    assert len(mem.hot) == 64
    assert len(mem.cold) == 1936
    assert mem.ids.tolist() == list(range(2000))
    mem.close()


def test_save_load_roundtrip_every_backend(tmp_path: Path) -> None:
    x = _data(600)
    q = x[::50]
    for name, cfg in CONFIGS.items():
        mem = _make(cfg, hot=200)
        mem.add(x, metadata=[{"i": i} for i in range(600)])
        mem.delete([3, 598])
        mem.save(tmp_path / name)
        loaded = HierarchicalMemory.load(tmp_path / name)
        assert len(loaded) == 598
        assert type(loaded.cold) is type(mem.cold)
        a, b = mem.search(q, 6), loaded.search(q, 6)
        assert torch.equal(a.ids, b.ids)
        assert a.metadata == b.metadata
        torch.testing.assert_close(a.vectors, b.vectors)
        assert loaded.add(x[:1]).tolist() == [600]  # id counter restored
        mem.close()
        loaded.close()


def test_path_selects_faiss_and_is_the_default_save_target(tmp_path: Path) -> None:
    mem = HierarchicalMemory(32, path=tmp_path / "p", hot_capacity=10)
    assert isinstance(mem.cold, FaissVectorStore)
    mem.add(_data(50))
    mem.save()
    assert len(HierarchicalMemory.load(tmp_path / "p")) == 50
    assert isinstance(HierarchicalMemory(32).cold, VectorStore)
    with pytest.raises(ValueError, match="path"):
        HierarchicalMemory(32).save()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_results_on_query_device_cuda() -> None:
    mem = _make(CONFIGS["compressed"], hot=50)
    mem.add(_data(200))
    res = mem.search(_data(200)[:3].cuda().half(), 2)
    assert res.vectors.device.type == "cuda"
    assert res.ids.device.type == "cuda"
    assert res.vectors.dtype == torch.float16


def test_results_on_query_device_and_dtype() -> None:
    mem = _make(CONFIGS["memory"], hot=50)
    mem.add(_data(100))
    res = mem.search(_data(100)[:2].double(), 2)
    assert res.vectors.dtype == torch.float64
    assert res.vectors.device == torch.device("cpu")
    res = mem.search(np.asarray(_data(100)[:2]), 2)  # numpy queries: CPU float32 tensors
    assert res.vectors.dtype == torch.float32


BAD = {  # case -> (call, expected message)
    "dim": (lambda m: m.add(torch.ones(2, 5)), "shape"),
    "nan": (lambda m: m.add(torch.full((1, 32), float("nan"))), "finite"),
    "inf": (lambda m: m.add(torch.full((1, 32), float("inf"))), "finite"),
    "ids-length": (lambda m: m.add(torch.ones(2, 32), ids=[1]), "one entry per vector"),
    "metadata-length": (lambda m: m.add(torch.ones(2, 32), metadata=[{}]), "one entry per vector"),
    "existing-id": (lambda m: m.add(torch.ones(1, 32), ids=[3]), "already in the memory"),
    "k0": (lambda m: m.search(torch.ones(32), 0), "k must be"),
    "query-dim": (lambda m: m.search(torch.ones(1, 31), 2), "shape"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_and_leaves_memory_unchanged(case: str) -> None:
    mem = _make(CONFIGS["compressed"], hot=20)
    mem.add(_data(100), metadata=[{"i": i} for i in range(100)])
    before = (mem.ids.tolist(), mem.vectors_of(mem.ids), mem.compressor.n_seen)
    call, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        call(mem)
    assert mem.ids.tolist() == before[0]
    assert len(mem) == 100
    torch.testing.assert_close(mem.vectors_of(mem.ids), before[1], atol=0, rtol=0)
    assert mem.compressor.n_seen == before[2]


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="metric"):
        HierarchicalMemory(8, metric="jaccard")
    with pytest.raises(ValueError, match=r"compressor\.dim"):
        HierarchicalMemory(8, compressor=StreamingCompressor(16, 4))
    with pytest.raises(ValueError, match="backend"):
        HierarchicalMemory(8, use_async=True, backend="memory")
    with pytest.raises(ValueError, match="hot_capacity"):
        HierarchicalMemory(8, hot_capacity=-1)
