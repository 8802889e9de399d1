"""Benchmarks that memory-store registers under ``seedbed.benchmarks``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from seedbed.core_layers.benchmarking import Metric, timed_ratio

__all__ = ["BENCHMARKS", "numpy_vs_faiss_flat"]


def _numpy_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    # base: (N, D), queries: (Q, D) -> ids (Q, k), best first, by inner product
    scores = queries @ base.T  # (Q, N)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (Q, k), unordered
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def numpy_vs_faiss_flat(full: bool = False) -> list[dict[str, Any]]:
    """Exact inner-product top-10: numpy matmul + argpartition against FAISS IndexFlatIP."""
    n, d, nq, k = (200_000, 128, 1000, 10) if full else (20_000, 64, 200, 10)
    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, d), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[rng.choice(n, nq, replace=False)] + 0.01 * rng.standard_normal(
        (nq, d), dtype=np.float32
    )
    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatIP(d)
    index.add(base)
    ids_np = _numpy_topk(base, queries, k)
    _, ids_faiss = index.search(queries, k)
    agree = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids_np, ids_faiss)]))
    t_faiss, t_np, _ratio = timed_ratio(
        lambda: index.search(queries, k), lambda: _numpy_topk(base, queries, k), repeats=3
    )
    note = f"N={n} D={d} Q={nq} k={k}, FAISS single thread"
    return [
        Metric("numpy_topk_agreement_with_faiss", agree, "", 0.999, True, note=note).as_dict(),
        Metric("numpy_time_over_faiss_flat", t_np / t_faiss, "x", None, False, note=note).as_dict(),
    ]


BENCHMARKS: list[Callable[..., list[dict[str, Any]]]] = [numpy_vs_faiss_flat]
