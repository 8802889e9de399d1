"""Exact top-k by blocked matmul and threshold filtering (numpy only).

``np.argpartition`` over every (query, base) score costs tens of nanoseconds per element, far
more than the matmul that produced it. Instead, the base is scanned in blocks of
``base_block`` rows; each query keeps its running top-k and its k-th best score as a
threshold. A block only costs a row-max and, for the few rows whose max beats the threshold,
a comparison and a small merge. After the first blocks almost nothing passes, so the scan runs
at matmul speed (the same blocking FAISS' ``IndexFlat`` uses).
"""

from __future__ import annotations

import numpy as np

__all__ = ["topk_inner_product"]


def topk_inner_product(
    queries: np.ndarray,
    base: np.ndarray,
    k: int,
    *,
    bias: np.ndarray | None = None,
    query_block: int = 1024,
    base_block: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``queries @ base.T + bias`` per query.

    Args:
        queries: (Q, D) float32.
        base: (N, D) float32.
        k: results per query (>= 1).
        bias: optional (N,) added to every score column (e.g. ``-||x||^2`` for L2).
        query_block: queries per matmul block.
        base_block: base rows per matmul block.

    Returns:
        ``(scores, rows)``: (Q, k) float32 best first and (Q, k) int64 row numbers into
        ``base``; when N < k the tail is padded with ``-inf`` and ``-1``.
    """
    nq_total, n = len(queries), len(base)
    out_s = np.full((nq_total, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq_total, k), -1, dtype=np.int64)
    if n == 0 or nq_total == 0:
        return out_s, out_i
    for q0 in range(0, nq_total, query_block):
        q = queries[q0 : q0 + query_block]  # (nq, D)
        nq = len(q)
        best_s = np.full((nq, k), -np.inf, dtype=np.float32)  # running top-k, unordered
        best_i = np.full((nq, k), -1, dtype=np.int64)
        thr = np.full(nq, -np.inf, dtype=np.float32)  # k-th best so far
        for b0 in range(0, n, base_block):
            s = q @ base[b0 : b0 + base_block].T  # (nq, nb)
            if bias is not None:
                s += bias[b0 : b0 + base_block]
            if b0 == 0:  # first block: plain partial sort
                kk = min(k, s.shape[1])
                p = np.argpartition(s, s.shape[1] - kk, axis=1)[:, -kk:]  # (nq, kk)
                best_s[:, :kk] = np.take_along_axis(s, p, axis=1)
                best_i[:, :kk] = p
                thr = best_s.min(axis=1)
                continue
            rows = np.flatnonzero(s.max(axis=1) > thr)  # queries with a new candidate
            if rows.size == 0:
                continue
            sub = s[rows]  # (r, nb)
            rr, cc = np.nonzero(sub > thr[rows, None])  # candidates, grouped by row
            counts = np.bincount(rr, minlength=len(rows))
            width = int(counts.max())
            pos = np.arange(len(rr)) - (np.cumsum(counts) - counts)[rr]  # slot within its row
            cand_s = np.full((len(rows), k + width), -np.inf, dtype=np.float32)
            cand_i = np.full((len(rows), k + width), -1, dtype=np.int64)
            cand_s[:, :k] = best_s[rows]
            cand_i[:, :k] = best_i[rows]
            cand_s[rr, k + pos] = sub[rr, cc]
            cand_i[rr, k + pos] = cc + b0
            p = np.argpartition(cand_s, width, axis=1)[:, -k:]  # (r, k) best of old + new
            best_s[rows] = np.take_along_axis(cand_s, p, axis=1)
            best_i[rows] = np.take_along_axis(cand_i, p, axis=1)
            thr[rows] = best_s[rows].min(axis=1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        out_s[q0 : q0 + nq] = np.take_along_axis(best_s, order, axis=1)
        out_i[q0 : q0 + nq] = np.take_along_axis(best_i, order, axis=1)
    out_i[~np.isfinite(out_s)] = -1
    return out_s, out_i
