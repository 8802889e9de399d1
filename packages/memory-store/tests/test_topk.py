import numpy as np
import pytest

from seedbed.memory_store._topk import topk_inner_product


def _reference(q: np.ndarray, x: np.ndarray, k: int, bias: np.ndarray | None = None) -> np.ndarray:
    s = q.astype(np.float64) @ x.astype(np.float64).T
    if bias is not None:
        s = s + bias
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize(
    ("nq", "n", "k", "qb", "nb"),
    [(7, 5000, 10, 3, 256), (64, 1000, 1, 64, 100), (5, 50, 8, 1024, 1024), (3, 20, 30, 2, 7)],
    ids=["Q7-N5000-k10", "Q64-N1000-k1", "Q5-N50-k8", "Q3-N20-k30-kgtN"],
)
def test_topk_matches_float64_sort(nq: int, n: int, k: int, qb: int, nb: int) -> None:
    rng = np.random.default_rng(0)
    q = rng.standard_normal((nq, 16)).astype(np.float32)
    x = rng.standard_normal((n, 16)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    for b in (None, bias):
        scores, rows = topk_inner_product(q, x, k, bias=b, query_block=qb, base_block=nb)
        ref = _reference(q, x, min(k, n), b)
        assert np.array_equal(rows[:, : min(k, n)], ref)
        if k > n:
            assert (rows[:, n:] == -1).all()
            assert np.isneginf(scores[:, n:]).all()
        assert (np.diff(scores[:, : min(k, n)], axis=1) <= 0).all()  # best first


def test_topk_empty_base() -> None:
    scores, rows = topk_inner_product(np.ones((2, 3), np.float32), np.empty((0, 3), np.float32), 4)
    assert (rows == -1).all()
    assert np.isneginf(scores).all()
