from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seedbed.memory_store import FaissVectorStore, ReadOnlyStoreError, VectorStore

KINDS = ["flat", "ivf", "hnsw"]
SMALL = dict(
    nlist=8, nprobe=8, train_size=400, ef_search=128
)  # ivf exact once trained (nprobe == nlist)


def snapshot(store: Any) -> tuple[list[int], np.ndarray, list[dict[str, Any]]]:
    ids = sorted(int(i) for i in store.ids)
    vecs, meta = store.get(ids) if ids else (np.empty((0, store.dim)), [])
    return ids, vecs, meta


def assert_same(a: tuple, b: tuple) -> None:
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]


def _data(n: int = 1000, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("metric", ["dot", "cosine", "l2"])
@pytest.mark.parametrize("kind", KINDS)
def test_search_agrees_with_exact_store(kind: str, metric: str) -> None:
    x, q = _data(), _data(20, seed=1)
    exact = VectorStore(16, metric)
    exact.add(x)
    store = FaissVectorStore(16, metric, kind, **SMALL)
    store.add(x[:300])  # ivf: below train_size, exact flat so far
    assert not store.trained
    store.add(x[300:])
    assert store.trained == (kind == "ivf")
    s_ref, i_ref, _ = exact.search(q, 10)
    s, i, _ = store.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, i_ref)])
    assert recall >= (1.0 if kind != "hnsw" else 0.95)
    if kind != "hnsw":
        np.testing.assert_allclose(s, s_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["dot", "cosine", "l2"])
@pytest.mark.parametrize("kind", KINDS)
def test_exact_search_equals_brute_force(kind: str, metric: str) -> None:
    """``exact=True`` is brute force over the live vectors: deletes and filters respected."""
    x, q = _data(), _data(20, seed=1)
    store = FaissVectorStore(16, metric, kind, **SMALL)
    store.add(x, metadata=[{"g": i % 3} for i in range(1000)])
    gone = np.arange(0, 1000, 7)
    store.delete(gone)
    live = np.setdiff1d(np.arange(1000), gone)
    exact = VectorStore(16, metric)
    exact.add(x[live], ids=live)
    s_ref, i_ref, _ = exact.search(q, 10)
    s, i, meta = store.search(q, 10, exact=True)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(s, s_ref, rtol=1e-4, atol=1e-4)
    assert all(
        m == {"g": int(j) % 3} for row_m, row_i in zip(meta, i) for m, j in zip(row_m, row_i)
    )
    _, i, _ = store.search(q, 10, filter={"g": 1}, exact=True)
    keep = live[live % 3 == 1]
    sub = VectorStore(16, metric)
    sub.add(x[keep], ids=keep)
    np.testing.assert_array_equal(i, sub.search(q, 10)[1])
    with pytest.raises(TypeError, match="exact must be a bool"):
        store.search(q, 10, exact=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_delete_on_every_kind(kind: str) -> None:
    x = _data()
    store = FaissVectorStore(16, "l2", kind, rebuild_threshold=0.3, **SMALL)
    store.add(x, metadata=[{"i": i} for i in range(1000)])
    gone = np.arange(0, 1000, 5)  # 20%: hnsw keeps tombstones
    assert store.delete(gone) == 200
    assert len(store) == 800
    assert store.delete(gone) == 0  # already gone
    _, ids, meta = store.search(x[gone], 3)
    assert not np.isin(ids, gone).any()
    assert all(m["i"] == i for row_m, row_i in zip(meta, ids) for m, i in zip(row_m, row_i))
    live = np.setdiff1d(np.arange(1000), gone)
    _, ids, _ = store.search(x[live[:50]], 1)
    assert (ids[:, 0] == live[:50]).all()  # each live vector finds itself
    if kind == "hnsw":
        assert len(store._tombstones) == 200
        store.delete(np.arange(1, 1000, 5))  # 40% deleted > threshold: graph rebuilt
        assert len(store._tombstones) == 0
        assert store._index.ntotal == len(store) == 600
        store.add(x[:1], ids=[0])  # a deleted id can come back
        assert store.search(x[:1], 1)[1][0, 0] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_filters_use_id_selectors(kind: str) -> None:
    x = _data()
    store = FaissVectorStore(16, "dot", kind, exact_filter_below=50, **SMALL)
    store.add(x, metadata=[{"g": i % 4} for i in range(1000)])
    store.delete([2, 6])
    _, ids, meta = store.search(x[:10], 5, filter={"g": 2})
    assert (ids % 4 == 2).all()
    assert not np.isin(ids, [2, 6]).any()
    assert all(m == {"g": 2} for row in meta for m in row)
    _, ids, _ = store.search(x[:3], 5, filter=lambda m: m["g"] == 1)
    assert (ids % 4 == 1).all()
    _, ids, _ = store.search(x[:3], 5, filter={"g": 7})  # nothing matches
    assert (ids == -1).all()


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_and_mmap_read_only(tmp_path: Path, kind: str) -> None:
    x = _data()
    store = FaissVectorStore(16, "l2", kind, **SMALL)
    store.add(x, metadata=[{"i": i} for i in range(1000)])
    store.delete([5, 6, 7])
    store.save(tmp_path / "idx")
    for mmap in (False, True):
        loaded = FaissVectorStore.load(tmp_path / "idx", mmap=mmap)
        assert (loaded.kind, loaded.metric, len(loaded), loaded.trained) == (
            kind,
            "l2",
            997,
            store.trained,
        )
        assert_same(snapshot(store), snapshot(loaded))
        q = _data(5, seed=9)
        assert np.array_equal(loaded.search(q, 4)[1], store.search(q, 4)[1])
    before = snapshot(loaded)
    for write in (lambda: loaded.add(x[:1]), lambda: loaded.delete([1])):
        with pytest.raises(ReadOnlyStoreError, match="mmap=True"):
            write()
    assert_same(before, snapshot(loaded))
    store.add(x[:2], ids=[5000, 5001])
    store.save(tmp_path / "idx")  # a second version replaces the first
    assert len(FaissVectorStore.load(tmp_path / "idx")) == 999
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["CURRENT", "v00000002"]


BAD_ADDS = {  # case -> (add kwargs, expected message)
    "dim-mismatch": (dict(vectors=np.ones((2, 5))), "shape"),
    "nan": (dict(vectors=np.full((1, 16), np.nan)), "finite"),
    "inf": (dict(vectors=np.full((1, 16), np.inf)), "finite"),
    "ids-length": (dict(vectors=np.ones((2, 16)), ids=[3000]), "one entry per vector"),
    "ids-metadata-length": (
        dict(vectors=np.ones((2, 16)), ids=[3000, 3001], metadata=[{}]),
        "one entry per vector",
    ),
    "existing-id": (dict(vectors=np.ones((1, 16)), ids=[0]), "already in the store"),
}


@pytest.mark.parametrize("case", list(BAD_ADDS))
@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_raises_and_leaves_store_unchanged(kind: str, case: str) -> None:
    store = FaissVectorStore(16, "dot", kind, **SMALL)
    store.add(_data(500), metadata=[{"i": i} for i in range(500)])
    before = snapshot(store)
    kwargs, message = BAD_ADDS[case]
    with pytest.raises(ValueError, match=message):
        store.add(**kwargs)
    for bad_k in (0, -3):
        with pytest.raises(ValueError, match="k must be"):
            store.search(_data(1), bad_k)
    with pytest.raises(ValueError, match="shape"):
        store.search(np.ones((1, 3)), 1)
    assert_same(before, snapshot(store))
    assert store._index.ntotal == 500


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="metric"):
        FaissVectorStore(8, "hamming")
    with pytest.raises(ValueError, match="kind"):
        FaissVectorStore(8, "dot", "lsh")
    with pytest.raises(ValueError, match="train_size"):
        FaissVectorStore(8, "dot", "ivf", nlist=64, train_size=10)


def test_sigkill_during_save_leaves_old_or_new(
    tmp_path: Path, kill_during_save, count_save_calls
) -> None:
    """20 trials: kill -9 at each write/fsync/rename of the versioned save, torn writes included."""
    path = tmp_path / "store"
    old = FaissVectorStore(16, "dot", "hnsw")
    old.add(_data(60, seed=4), metadata=[{"v": "old"}] * 60)
    new = FaissVectorStore(16, "dot", "hnsw")
    new.add(_data(200, seed=5), metadata=[{"v": "new"}] * 200)
    new.delete([1, 2, 3])  # tombstones travel in the sidecar
    n_calls = count_save_calls(lambda: new.save(tmp_path / "probe"))
    assert n_calls >= 8  # two files (write + fsync each), dir fsyncs, two renames
    old_snap, new_snap = snapshot(old), snapshot(new)
    outcomes = []
    for trial in range(20):
        old.save(path)
        killed = kill_during_save(lambda: new.save(path), trial % (n_calls + 1))
        loaded = FaissVectorStore.load(path)
        snap = snapshot(loaded)
        is_old = (
            snap[0] == old_snap[0]
            and np.array_equal(snap[1], old_snap[1])
            and snap[2] == old_snap[2]
        )
        is_new = (
            snap[0] == new_snap[0]
            and np.array_equal(snap[1], new_snap[1])
            and snap[2] == new_snap[2]
        )
        assert is_old or is_new, f"trial {trial}: neither old nor new"
        assert loaded._index.ntotal == len(loaded) + len(
            loaded._tombstones
        )  # index and sidecar agree
        outcomes.append(("killed" if killed else "done", "old" if is_old else "new"))
    assert ("killed", "old") in outcomes
    assert ("killed", "new") in outcomes
    assert ("done", "new") in outcomes
