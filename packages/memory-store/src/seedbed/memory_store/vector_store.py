"""In-memory vector store: exact search by blocked matmul, atomic ``.npz`` persistence.

The shared vector-store interface (``add``/``search``/``delete``/``save``/``load``/``len``) in
its simplest form: vectors live in one growable float32 array, ids in a parallel int64 array,
metadata in a list of JSON-serialisable dicts.

Scores: similarity (higher first) for ``dot`` and ``cosine``, squared Euclidean distance
(lower first) for ``l2``. Missing results (fewer than k matches) have id -1, metadata None and
score -inf (dot/cosine) or +inf (l2).
"""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path
from typing import Any, cast

import numpy as np

from seedbed.memory_store._atomic import atomic_write_bytes
from seedbed.memory_store._topk import topk_inner_product
from seedbed.memory_store._validation import (
    MetadataFilter,
    check_delete_ids,
    check_dim,
    check_filter,
    check_ids,
    check_k,
    check_metadata,
    check_metric,
    check_vectors,
    matches,
    normalize_rows,
    to_numpy,
)

__all__ = ["SearchResult", "VectorStore"]

_FORMAT = "seedbed.VectorStore/1"

# (scores (Q, k), ids (Q, k), metadata Q lists of k dicts-or-None)
SearchResult = tuple[np.ndarray, np.ndarray, list[list[dict[str, Any] | None]]]


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of an uncompressed ``.npz`` holding ``arrays`` (no pickles)."""
    buf = io.BytesIO()
    np.savez(buf, **cast(dict[str, Any], arrays))
    return buf.getvalue()


class VectorStore:
    """Exact in-memory vector store.

    Args:
        dim: vector dimension D.
        metric: ``"dot"`` (inner product), ``"cosine"`` (vectors are L2-normalised on the way
            in) or ``"l2"`` (squared Euclidean distance).

    Example:
        >>> store = VectorStore(4, metric="cosine")
        >>> ids = store.add(np.eye(4), metadata=[{"tag": i % 2} for i in range(4)])
        >>> scores, ids, meta = store.search(np.eye(4)[:1], k=2, filter={"tag": 0})
    """

    def __init__(self, dim: int, metric: str = "dot") -> None:
        self.dim = check_dim(dim)
        self.metric = check_metric(metric)
        self._vecs = np.empty((0, self.dim), dtype=np.float32)  # capacity rows, first n used
        self._sqnorm = np.empty(0, dtype=np.float32)  # ||x||^2 per row (l2 only)
        self._ids = np.empty(0, dtype=np.int64)
        self._meta: list[dict[str, Any]] = []
        self._row: dict[int, int] = {}  # id -> row
        self._n = 0
        self._next_id = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self._n

    def __contains__(self, id_: object) -> bool:
        return isinstance(id_, (int, np.integer)) and int(id_) in self._row

    def __repr__(self) -> str:
        return f"VectorStore(dim={self.dim}, metric={self.metric!r}, size={self._n})"

    @property
    def ids(self) -> np.ndarray:
        """(N,) int64 ids in storage order (a copy)."""
        with self._lock:
            return self._ids[: self._n].copy()

    @property
    def vectors(self) -> np.ndarray:
        """(N, D) float32 stored vectors in storage order (a copy; normalised for cosine)."""
        with self._lock:
            return self._vecs[: self._n].copy()

    def get(self, ids: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Stored vectors (M, D) and metadata of the given ids (KeyError if one is missing)."""
        req = [int(i) for i in np.atleast_1d(to_numpy(ids)).tolist()]
        with self._lock:
            missing = [i for i in req if i not in self._row]
            if missing:
                raise KeyError(f"ids not in store: {missing[:10]}")
            rows = np.array([self._row[i] for i in req], dtype=np.int64)
            return self._vecs[rows].copy(), [dict(self._meta[r]) for r in rows]

    # ------------------------------------------------------------------ writes
    def _prepare(self, vectors: Any) -> np.ndarray:
        x = check_vectors(vectors, self.dim)
        return normalize_rows(x) if self.metric == "cosine" else x

    def add(self, vectors: Any, ids: Any = None, metadata: Any = None) -> np.ndarray:
        """Add vectors.

        Args:
            vectors: (N, D) array-like (numpy, torch, lists) or one (D,) vector.
            ids: optional N distinct non-negative ints not already stored; default: fresh ids.
            metadata: optional N JSON-serialisable dicts.

        Returns:
            (N,) int64 ids of the added vectors.
        """
        x = self._prepare(vectors)
        n = len(x)
        new_ids = check_ids(ids, n)
        meta = check_metadata(metadata, n)
        with self._lock:
            if new_ids is None:
                new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            else:
                dup = [int(i) for i in new_ids if int(i) in self._row]
                if dup:
                    raise ValueError(f"ids already in the store: {dup[:10]}")
            self._grow(self._n + n)
            rows = slice(self._n, self._n + n)
            self._vecs[rows] = x
            self._sqnorm[rows] = np.einsum("nd,nd->n", x, x)
            self._ids[rows] = new_ids
            self._meta.extend(meta)
            for r, i in enumerate(new_ids.tolist(), start=self._n):
                self._row[i] = r
            self._n += n
            if n:
                self._next_id = max(self._next_id, int(new_ids.max()) + 1)
            return new_ids.copy()

    def _grow(self, need: int) -> None:
        cap = len(self._vecs)
        if need <= cap:
            return
        new_cap = max(need, 2 * cap, 64)
        for name, shape, dtype in (
            ("_vecs", (new_cap, self.dim), np.float32),
            ("_sqnorm", (new_cap,), np.float32),
            ("_ids", (new_cap,), np.int64),
        ):
            arr = np.empty(shape, dtype=dtype)
            arr[: self._n] = getattr(self, name)[: self._n]
            setattr(self, name, arr)

    def delete(self, ids: Any) -> int:
        """Remove the given ids (unknown ids are ignored). Returns how many were removed."""
        want = check_delete_ids(ids)
        with self._lock:
            removed = 0
            for i in want.tolist():
                r = self._row.pop(i, None)
                if r is None:
                    continue
                last = self._n - 1
                if r != last:  # move the last row into the hole
                    self._vecs[r] = self._vecs[last]
                    self._sqnorm[r] = self._sqnorm[last]
                    self._ids[r] = self._ids[last]
                    self._meta[r] = self._meta[last]
                    self._row[int(self._ids[r])] = r
                self._meta.pop()
                self._n -= 1
                removed += 1
            return removed

    # ------------------------------------------------------------------ search
    def search(self, queries: Any, k: int, filter: MetadataFilter = None) -> SearchResult:
        """Exact top-k search.

        Args:
            queries: (Q, D) array-like or one (D,) query.
            k: results per query, >= 1.
            filter: None, a dict (every key must equal the stored metadata's value) or a
                callable ``f(metadata) -> bool``.

        Returns:
            ``(scores, ids, metadata)``: (Q, k) float32, (Q, k) int64 (-1 when missing) and Q
            lists of k metadata dicts (None when missing).
        """
        q = self._prepare(queries) if self.metric == "cosine" else check_vectors(queries, self.dim)
        scores, ids, meta, _ = self._search(q, check_k(k), check_filter(filter), want_vectors=False)
        return scores, ids, meta

    def _search(
        self, q: np.ndarray, k: int, flt: MetadataFilter, *, want_vectors: bool
    ) -> tuple[np.ndarray, np.ndarray, list[list[dict[str, Any] | None]], np.ndarray | None]:
        """Validated search; also gathers the (Q, k, D) vectors (zeros when missing) on request."""
        with self._lock:
            base = self._vecs[: self._n]
            rows_allowed: np.ndarray | None = None
            if flt is not None:
                rows_allowed = np.fromiter(
                    (r for r in range(self._n) if matches(flt, self._meta[r])), dtype=np.int64
                )
                base = base[rows_allowed]
            if self.metric == "l2":  # argmax of 2 q.x - |x|^2 == argmin |q - x|^2
                sq = self._sqnorm[: self._n]
                bias = -(sq if rows_allowed is None else sq[rows_allowed])
                scores, rows = topk_inner_product(2.0 * q, base, k, bias=bias)
            else:
                scores, rows = topk_inner_product(q, base, k)
            found = rows >= 0
            if rows_allowed is not None:
                rows = np.where(found, rows_allowed[np.maximum(rows, 0)], -1)
            safe = np.maximum(rows, 0)
            ids = np.where(found, self._ids[safe], -1)
            meta = [[dict(self._meta[r]) if r >= 0 else None for r in row] for row in rows.tolist()]
            vecs = (
                np.where(found[..., None], self._vecs[safe], 0.0).astype(np.float32)
                if want_vectors
                else None
            )
        if self.metric == "l2":
            qsq = np.einsum("qd,qd->q", q, q)[:, None]
            scores = np.where(found, np.maximum(qsq - scores, 0.0), np.inf).astype(np.float32)
        return scores, ids, meta, vecs

    # ------------------------------------------------------------------ persistence
    def _state_arrays(self) -> dict[str, np.ndarray]:
        header = {
            "format": _FORMAT,
            "dim": self.dim,
            "metric": self.metric,
            "next_id": self._next_id,
        }
        return {
            "header": np.array(json.dumps(header)),
            "vectors": self._vecs[: self._n],
            "ids": self._ids[: self._n],
            "metadata": np.array(json.dumps(self._meta)),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the store to one ``.npz`` file atomically (temp file, fsync, rename).

        A crash or ``kill -9`` at any moment leaves ``path`` holding either the previous save
        or this one. No pickles are written.
        """
        with self._lock:
            data = npz_bytes(self._state_arrays())
        atomic_write_bytes(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VectorStore:
        """Read a store written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            if header.get("format") != _FORMAT:
                raise ValueError(
                    f"{path} is not a {_FORMAT} file (format={header.get('format')!r})"
                )
            store = cls(header["dim"], header["metric"])
            vecs, ids = z["vectors"], z["ids"]
            meta = json.loads(str(z["metadata"]))
        if not (len(vecs) == len(ids) == len(meta)):
            raise ValueError(
                f"{path} is inconsistent: {len(vecs)} vectors, {len(ids)} ids, {len(meta)} metadata"
            )
        store._vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        store._sqnorm = np.einsum("nd,nd->n", store._vecs, store._vecs)
        store._ids = ids.astype(np.int64)
        store._meta = meta
        store._n = len(ids)
        store._row = {int(i): r for r, i in enumerate(ids.tolist())}
        store._next_id = int(header["next_id"])
        return store
