from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from seedbed.memory_store import VectorStore


def _reference(metric: str, x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 brute force: (scores, rows) best first."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    if metric == "l2":
        d = ((q64[:, None, :] - x64[None, :, :]) ** 2).sum(-1)
        rows = np.argsort(d, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(d, rows, 1), rows
    s = q64 @ x64.T
    rows = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, rows, 1), rows


def snapshot(store: Any) -> tuple[list[int], np.ndarray, list[dict[str, Any]]]:
    ids = sorted(int(i) for i in store.ids)
    if not ids:
        return ids, np.empty((0, store.dim)), []
    vecs, meta = store.get(ids)
    return ids, vecs, meta


def assert_same(a: tuple, b: tuple) -> None:
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]


@pytest.mark.parametrize("metric", ["dot", "cosine", "l2"])
def test_search_matches_float64_reference(metric: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 24)).astype(np.float32)
    q = rng.standard_normal((37, 24)).astype(np.float32)
    store = VectorStore(24, metric)
    ids = store.add(x, ids=np.arange(3000) * 3 + 7)
    scores, got, meta = store.search(q, 10)
    ref_s, ref_rows = _reference(metric, x, q, 10)
    assert np.array_equal(got, ids[ref_rows])
    np.testing.assert_allclose(scores, ref_s, rtol=1e-4, atol=1e-4)
    assert meta[0][0] == {}


def test_add_ids_metadata_delete_len() -> None:
    store = VectorStore(4)
    a = store.add(np.eye(4), metadata=[{"n": i} for i in range(4)])
    assert a.tolist() == [0, 1, 2, 3]
    assert len(store) == 4
    b = store.add(-torch.ones(2, 4), ids=[10, 20])  # torch input, explicit ids
    assert b.tolist() == [10, 20]
    assert store.add(np.zeros(4)).tolist() == [21]  # fresh ids continue after the largest
    assert store.delete([1, 20, 999]) == 2
    assert len(store) == 5
    assert 1 not in store
    assert 20 not in store
    assert 2 in store
    _, ids, meta = store.search(np.eye(4)[2], 1)
    assert ids.tolist() == [[2]]
    assert meta == [[{"n": 2}]]
    vecs, meta = store.get([3, 10])
    np.testing.assert_array_equal(vecs, np.stack([np.eye(4)[3], -np.ones(4)]))
    assert meta == [{"n": 3}, {}]


def test_filter_dict_and_callable() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    store = VectorStore(8)
    store.add(x, metadata=[{"parity": i % 2, "i": i} for i in range(500)])
    q = rng.standard_normal((5, 8)).astype(np.float32)
    _, ids, meta = store.search(q, 7, filter={"parity": 1})
    assert (ids % 2 == 1).all()
    assert all(m["parity"] == 1 for row in meta for m in row)
    odd = np.arange(1, 500, 2)
    ref = odd[np.argsort(-(q @ x[odd].T), axis=1)[:, :7]]
    assert np.array_equal(ids, ref)
    _, ids, _ = store.search(q, 3, filter=lambda m: m["i"] < 2)
    assert set(ids.ravel().tolist()) <= {0, 1, -1}
    assert (ids[:, 2] == -1).all()


def test_k_larger_than_store_pads() -> None:
    store = VectorStore(3, "l2")
    store.add(np.eye(3))
    scores, ids, meta = store.search(np.zeros(3), 5)
    assert ids[0, 3:].tolist() == [-1, -1]
    assert math.isinf(scores[0, 4])
    assert meta[0][4] is None
    np.testing.assert_allclose(scores[0, :3], 1.0)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    store = VectorStore(6, "cosine")
    store.add(rng.standard_normal((40, 6)), metadata=[{"s": str(i)} for i in range(40)])
    store.delete([3, 4])
    store.save(tmp_path / "s.npz")
    loaded = VectorStore.load(tmp_path / "s.npz")
    assert (loaded.metric, loaded.dim, len(loaded)) == ("cosine", 6, 38)
    assert_same(snapshot(store), snapshot(loaded))
    assert loaded.add(np.ones(6)).tolist() == [40]  # id counter restored
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temp files left


BAD_ADDS = {  # case -> (add kwargs, expected message)
    "dim-mismatch": (dict(vectors=np.ones((2, 5))), "shape"),
    "nan": (dict(vectors=np.array([[1.0, np.nan, 0, 0]])), "finite"),
    "inf": (dict(vectors=np.array([[1.0, 0, np.inf, 0]])), "finite"),
    "ids-length": (dict(vectors=np.ones((2, 4)), ids=[1]), "one entry per vector"),
    "metadata-length": (dict(vectors=np.ones((2, 4)), metadata=[{}]), "one entry per vector"),
    "ids-metadata-length": (
        dict(vectors=np.ones((2, 4)), ids=[8, 9], metadata=[{}, {}, {}]),
        "one entry per vector",
    ),
    "duplicate-ids": (dict(vectors=np.ones((2, 4)), ids=[8, 8]), "distinct"),
    "existing-id": (dict(vectors=np.ones((1, 4)), ids=[0]), "already in the store"),
    "negative-id": (dict(vectors=np.ones((1, 4)), ids=[-1]), ">= 0"),
    "metadata-not-json": (dict(vectors=np.ones((1, 4)), metadata=[{"x": object()}]), "JSON"),
    "ragged": (dict(vectors=[[1, 2, 3, 4], [1, 2]]), "numeric"),
}


@pytest.mark.parametrize("case", list(BAD_ADDS))
def test_bad_add_raises_and_leaves_store_unchanged(case: str) -> None:
    store = VectorStore(4)
    store.add(np.eye(4), metadata=[{"k": i} for i in range(4)])
    before = snapshot(store)
    kwargs, message = BAD_ADDS[case]
    with pytest.raises(ValueError, match=message):
        store.add(**kwargs)
    assert_same(before, snapshot(store))
    assert store.add(np.ones(4)).tolist() == [4]  # id counter untouched too


@pytest.mark.parametrize(
    ("queries", "k", "message"),
    [
        (np.ones((1, 3)), 2, "shape"),
        (np.ones(4), 0, "k must be"),
        (np.ones(4), -1, "k must be"),
        (np.full((1, 4), np.nan), 1, "finite"),
        (np.ones(4), 1.5, "k must be"),
    ],
    ids=["dim", "k0", "kneg", "nan", "kfloat"],
)
def test_bad_search_raises(queries: np.ndarray, k: Any, message: str) -> None:
    store = VectorStore(4)
    store.add(np.eye(4))
    before = snapshot(store)
    with pytest.raises(ValueError, match=message):
        store.search(queries, k)
    assert_same(before, snapshot(store))


def test_unknown_metric_and_bad_filter() -> None:
    with pytest.raises(ValueError, match="metric"):
        VectorStore(4, "manhattan")
    with pytest.raises(ValueError, match="dim"):
        VectorStore(0)
    store = VectorStore(4, "cosine")
    with pytest.raises(ValueError, match="non-zero"):
        store.add(np.zeros((1, 4)))
    assert len(store) == 0
    with pytest.raises(ValueError, match="filter"):
        store.search(np.ones(4), 1, filter=3)


def test_sigkill_during_save_leaves_old_or_new(
    tmp_path: Path, kill_during_save, count_save_calls
) -> None:
    """20 trials: kill -9 at every write/fsync/rename of save (torn writes included)."""
    rng = np.random.default_rng(3)
    path = tmp_path / "store.npz"
    old = VectorStore(8)
    old.add(rng.standard_normal((50, 8)), metadata=[{"v": "old"}] * 50)
    old.save(path)
    new = VectorStore(8)
    new.add(rng.standard_normal((300, 8)), metadata=[{"v": "new"}] * 300)
    n_calls = count_save_calls(lambda: new.save(tmp_path / "probe.npz"))
    assert n_calls >= 3  # write(s), fsync, replace, dir fsync
    old_snap, new_snap = snapshot(old), snapshot(new)
    outcomes = []
    for trial in range(20):
        old.save(path)  # start each trial from the old state
        killed = kill_during_save(lambda: new.save(path), trial % (n_calls + 1))
        loaded = snapshot(VectorStore.load(path))
        is_old = (
            loaded[0] == old_snap[0]
            and np.array_equal(loaded[1], old_snap[1])
            and loaded[2] == old_snap[2]
        )
        is_new = (
            loaded[0] == new_snap[0]
            and np.array_equal(loaded[1], new_snap[1])
            and loaded[2] == new_snap[2]
        )
        assert is_old or is_new, f"trial {trial}: store is neither the old nor the new state"
        outcomes.append(("killed" if killed else "done", "old" if is_old else "new"))
    assert ("killed", "old") in outcomes
    assert ("done", "new") in outcomes
