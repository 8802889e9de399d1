"""FAISS-backed vector store: flat, IVF and HNSW indexes with delete, filters and durable save.

What FAISS does not give and this class adds:

* **Delete on every kind.** ``flat`` and ``ivf`` remove ids in place. HNSW cannot remove
  (``remove_ids`` is unsupported), so deleted ids become *tombstones* that every search
  excludes through an ID selector; once tombstones exceed ``rebuild_threshold`` of the
  index, the graph is rebuilt from the live vectors.
* **IVF before it is trainable.** Until ``train_size`` vectors are stored, an ``ivf`` store
  keeps an exact flat index; the first add that reaches ``train_size`` trains the coarse
  quantizer on everything stored and moves it into the IVF index.
* **Metadata filters** are evaluated on the Python-side metadata and handed to FAISS as an
  ``IDSelectorBatch``, so the index itself skips the rest. With HNSW a very selective filter
  (fewer than ``exact_filter_below`` allowed ids) is answered exactly from the reconstructed
  vectors instead, since graph search under a tight selector can miss results.
* **Durable save.** ``faiss.write_index`` writes in place. :meth:`save` serialises the index
  and writes it together with its metadata sidecar into a new version directory (temp dir,
  fsync each file, fsync, ``os.replace``), then flips the ``CURRENT`` pointer with a temp
  file + fsync + ``os.replace`` + directory fsync. The index and sidecar are committed by one
  rename, so they can never disagree; ``kill -9`` at any instant leaves the old or the new
  version.
* **Read-only mmap.** ``load(path, mmap=True)`` maps the index file instead of reading it;
  FAISS would crash the process on a write to such an index, so every write raises
  :class:`ReadOnlyStoreError` first.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from seedbed.memory_store._atomic import commit_version, current_version_dir, write_file_durable
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
from seedbed.memory_store.vector_store import SearchResult

__all__ = ["KINDS", "FaissVectorStore", "ReadOnlyStoreError"]

KINDS = ("flat", "ivf", "hnsw")
_FORMAT = "seedbed.FaissVectorStore/1"
_faiss: Any = faiss  # SWIG classes with keyword constructors the type stubs do not describe
_INDEX_FILE = "index.faiss"
_META_FILE = "meta.json"


class ReadOnlyStoreError(PermissionError):
    """A write was attempted on a store opened read-only (``load(..., mmap=True)``)."""


class FaissVectorStore:
    """Vector store on a FAISS index.

    Args:
        dim: vector dimension D.
        metric: ``"dot"``, ``"cosine"`` (normalised inner product) or ``"l2"`` (squared
            distance, lower first).
        kind: ``"flat"`` (exact, ``IndexIDMap2(IndexFlat)``), ``"ivf"`` (``IndexIVFFlat``) or
            ``"hnsw"`` (``IndexIDMap2(IndexHNSWFlat)``).
        nlist: IVF inverted lists.
        nprobe: IVF lists visited per query.
        train_size: stored vectors needed before the IVF is trained (default ``39 * nlist``,
            FAISS' minimum for k-means); the store is exact until then.
        hnsw_m: HNSW neighbours per node.
        ef_construction: HNSW build beam width.
        ef_search: HNSW search beam width (raised to k when k is larger).
        rebuild_threshold: HNSW rebuild when tombstones exceed this fraction of the index.
        exact_filter_below: HNSW answers filters allowing fewer ids than this exactly.
    """

    def __init__(
        self,
        dim: int,
        metric: str = "dot",
        kind: str = "flat",
        *,
        nlist: int = 256,
        nprobe: int = 16,
        train_size: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        rebuild_threshold: float = 0.25,
        exact_filter_below: int = 2048,
    ) -> None:
        self.dim = check_dim(dim)
        self.metric = check_metric(metric)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        for name, v in (("nlist", nlist), ("nprobe", nprobe), ("hnsw_m", hnsw_m)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name, v in (("ef_construction", ef_construction), ("ef_search", ef_search)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if train_size is not None and (not isinstance(train_size, int) or train_size < nlist):
            raise ValueError(f"train_size must be an int >= nlist ({nlist}), got {train_size!r}")
        if not 0.0 < rebuild_threshold <= 1.0:
            raise ValueError(f"rebuild_threshold must be in (0, 1], got {rebuild_threshold}")
        if not isinstance(exact_filter_below, int) or exact_filter_below < 0:
            raise ValueError(f"exact_filter_below must be an int >= 0, got {exact_filter_below!r}")
        self.kind = kind
        self.nlist = nlist
        self.nprobe = nprobe
        self.train_size = 39 * nlist if train_size is None else train_size
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.rebuild_threshold = float(rebuild_threshold)
        self.exact_filter_below = exact_filter_below
        self._faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        self._meta: dict[int, dict[str, Any]] = {}  # live id -> metadata
        self._tombstones: set[int] = set()  # hnsw: deleted but still in the graph
        self._next_id = 0
        self._trained = False  # ivf: True once the IVF index replaced the flat one
        self._read_only = False
        self._lock = threading.RLock()
        self._index: Any = self._new_index()

    # ------------------------------------------------------------------ index plumbing
    def _flat(self) -> Any:
        return faiss.IndexIDMap2(faiss.IndexFlat(self.dim, self._faiss_metric))

    def _new_index(self) -> Any:
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, self._faiss_metric)
            inner.hnsw.efConstruction = self.ef_construction
            return faiss.IndexIDMap2(inner)
        return self._flat()

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (vector, id) in an ``IndexIDMap2`` index (flat or HNSW), tombstones included."""
        n = self._index.ntotal
        if n == 0:
            return np.empty((0, self.dim), np.float32), np.empty(0, np.int64)
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        return self._index.index.reconstruct_n(0, n), ids

    def _train_ivf(self, x: np.ndarray, ids: np.ndarray) -> None:
        """Replace the exact flat index by a trained IVF holding old + new vectors."""
        old_x, old_ids = self._all_vectors()
        all_x = np.concatenate([old_x, x]) if len(old_x) else x
        all_ids = np.concatenate([old_ids, ids]) if len(old_ids) else ids
        quantizer = faiss.IndexFlat(self.dim, self._faiss_metric)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, self._faiss_metric)
        ivf.cp.seed = 1234
        ivf.train(all_x)
        ivf.set_direct_map_type(_faiss.DirectMap.Hashtable)
        ivf.add_with_ids(all_x, all_ids)
        self._index = ivf
        self._trained = True

    def _rebuild_hnsw(self) -> None:
        x, ids = self._all_vectors()
        live = np.array([int(i) not in self._tombstones for i in ids], dtype=bool)
        index = self._new_index()
        if live.any():
            index.add_with_ids(np.ascontiguousarray(x[live]), ids[live])
        self._index = index
        self._tombstones.clear()

    def _check_writable(self) -> None:
        if self._read_only:
            raise ReadOnlyStoreError(
                "this FaissVectorStore was loaded with mmap=True and is read-only "
                "(FAISS would abort the process on a write to a mapped index); "
                "load it with mmap=False to modify it"
            )

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, id_: object) -> bool:
        return isinstance(id_, (int, np.integer)) and int(id_) in self._meta

    def __repr__(self) -> str:
        return (
            f"FaissVectorStore(dim={self.dim}, metric={self.metric!r}, kind={self.kind!r}, "
            f"size={len(self)}, read_only={self._read_only})"
        )

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def trained(self) -> bool:
        """ivf: whether the IVF index is in use (False: exact flat until ``train_size``)."""
        return self._trained

    @property
    def ids(self) -> np.ndarray:
        """(N,) int64 live ids (sorted)."""
        with self._lock:
            return self._live_ids(None)

    def get(self, ids: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Stored vectors (M, D) and metadata for the given ids (KeyError if one is missing)."""
        req = np.atleast_1d(to_numpy(ids)).astype(np.int64)
        with self._lock:
            return self._get(req)

    def _get(self, req: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        missing = [int(i) for i in req if int(i) not in self._meta]
        if missing:
            raise KeyError(f"ids not in store: {missing[:10]}")
        if len(req) == 0:
            return np.empty((0, self.dim), np.float32), []
        vecs = self._index.reconstruct_batch(np.ascontiguousarray(req))
        return vecs, [dict(self._meta[int(i)]) for i in req]

    # ------------------------------------------------------------------ writes
    def _prepare(self, vectors: Any, name: str = "vectors") -> np.ndarray:
        x = check_vectors(vectors, self.dim, name=name)
        return normalize_rows(x, name=name) if self.metric == "cosine" else x

    def add(self, vectors: Any, ids: Any = None, metadata: Any = None) -> np.ndarray:
        """Add vectors (see :meth:`VectorStore.add`). Returns the (N,) int64 ids."""
        x, new_ids, meta = self._validate_add(vectors, ids, metadata)
        with self._lock:
            return self._add(x, new_ids, meta)

    def _validate_add(
        self, vectors: Any, ids: Any, metadata: Any
    ) -> tuple[np.ndarray, np.ndarray | None, list[dict[str, Any]]]:
        self._check_writable()
        x = self._prepare(vectors)
        return x, check_ids(ids, len(x)), check_metadata(metadata, len(x))

    def _add(
        self, x: np.ndarray, new_ids: np.ndarray | None, meta: list[dict[str, Any]]
    ) -> np.ndarray:
        self._check_writable()
        n = len(x)
        if new_ids is None:
            new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            dup = [int(i) for i in new_ids if int(i) in self._meta]
            if dup:
                raise ValueError(f"ids already in the store: {dup[:10]}")
        if n == 0:
            return new_ids
        if self._tombstones and any(int(i) in self._tombstones for i in new_ids):
            self._rebuild_hnsw()  # an id coming back: purge its tombstone first
        if self.kind == "ivf" and not self._trained and self._index.ntotal + n >= self.train_size:
            self._train_ivf(x, new_ids)
        else:
            self._index.add_with_ids(x, new_ids)
        for i, m in zip(new_ids.tolist(), meta):
            self._meta[i] = m
        self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        return new_ids.copy()

    def delete(self, ids: Any) -> int:
        """Remove ids (unknown ids ignored). Returns how many were removed."""
        self._check_writable()
        want = check_delete_ids(ids)
        with self._lock:
            return self._delete(want)

    def _delete(self, want: np.ndarray) -> int:
        self._check_writable()
        present = np.array([i for i in want.tolist() if i in self._meta], dtype=np.int64)
        if len(present) == 0:
            return 0
        if self.kind == "hnsw":
            self._tombstones.update(present.tolist())
            if len(self._tombstones) > self.rebuild_threshold * self._index.ntotal:
                for i in present.tolist():
                    del self._meta[i]
                self._rebuild_hnsw()
                return len(present)
        elif self._trained:  # IVF with a hashtable direct map needs an IDSelectorArray
            self._index.remove_ids(faiss.IDSelectorArray(present))
        else:
            self._index.remove_ids(faiss.IDSelectorBatch(present))
        for i in present.tolist():
            del self._meta[i]
        return len(present)

    # ------------------------------------------------------------------ search
    def search(
        self, queries: Any, k: int, filter: MetadataFilter = None, *, exact: bool = False
    ) -> SearchResult:
        """Top-k search (see :meth:`VectorStore.search` for the result layout).

        Args:
            queries: (Q, D) or (D,) query vectors.
            k: results per query.
            filter: metadata filter (see :meth:`VectorStore.search`).
            exact: brute force over every live vector, read back from the index (O(N D) per
                call) instead of the index's own search. For ground truth, or to check that
                nothing was lost: an HNSW graph can leave a node unreachable after
                neighbour-list pruning, so its approximate search may miss a stored id.
        """
        q, k, flt = self._validate_search(queries, k, filter, exact)
        with self._lock:
            return self._search(q, k, flt, exact)

    def _validate_search(
        self, queries: Any, k: int, filter: MetadataFilter, exact: bool = False
    ) -> tuple[np.ndarray, int, MetadataFilter]:
        if not isinstance(exact, bool):
            raise TypeError(f"exact must be a bool, got {type(exact).__name__}")
        return self._prepare(queries, "queries"), check_k(k), check_filter(filter)

    def _search(
        self, q: np.ndarray, k: int, flt: MetadataFilter, exact: bool = False
    ) -> SearchResult:
        if exact:
            return self._exact_subset(q, k, self._live_ids(flt))
        keep: list[Any] = []  # selectors must outlive the search call
        sel: Any = None
        if flt is not None:
            allowed = self._live_ids(flt)
            if self.kind == "hnsw" and len(allowed) < self.exact_filter_below:
                return self._exact_subset(q, k, allowed)
            sel = faiss.IDSelectorBatch(allowed)
            keep.append(sel)
        elif self._tombstones:
            inner = faiss.IDSelectorBatch(np.fromiter(self._tombstones, dtype=np.int64))
            sel = faiss.IDSelectorNot(inner)
            keep += [inner, sel]
        if self.kind == "hnsw":
            params: Any = _faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.ef_search, k))
        elif self._trained:
            params = _faiss.SearchParametersIVF(sel=sel, nprobe=min(self.nprobe, self.nlist))
        else:
            params = _faiss.SearchParameters(sel=sel)
        scores, ids = self._index.search(q, k, params=params)
        return self._finish(scores, ids)

    def _live_ids(self, flt: MetadataFilter) -> np.ndarray:
        """(M,) int64 sorted live ids whose metadata pass ``flt`` (all of them for None)."""
        ids = [i for i, m in self._meta.items() if flt is None or matches(flt, m)]
        return np.array(sorted(ids), dtype=np.int64)

    def _exact_subset(self, q: np.ndarray, k: int, allowed: np.ndarray) -> SearchResult:
        vecs = (
            self._index.reconstruct_batch(np.ascontiguousarray(allowed))
            if len(allowed)
            else np.empty((0, self.dim), np.float32)
        )
        if self.metric == "l2":
            bias = -np.einsum("nd,nd->n", vecs, vecs)
            sim, rows = topk_inner_product(2.0 * q, vecs, k, bias=bias)
            qsq = np.einsum("qd,qd->q", q, q)[:, None]
            scores = np.where(rows >= 0, np.maximum(qsq - sim, 0.0), np.inf).astype(np.float32)
        else:
            scores, rows = topk_inner_product(q, vecs, k)
        ids = np.where(rows >= 0, allowed[np.maximum(rows, 0)] if len(allowed) else -1, -1)
        return self._finish(scores, ids)

    def _finish(self, scores: np.ndarray, ids: np.ndarray) -> SearchResult:
        ids = ids.astype(np.int64)
        missing = ids < 0
        scores = scores.astype(np.float32)
        scores[missing] = np.inf if self.metric == "l2" else -np.inf
        meta = [[dict(self._meta[i]) if i >= 0 else None for i in row] for row in ids.tolist()]
        return scores, ids, meta

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "metric": self.metric,
            "kind": self.kind,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "train_size": self.train_size,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "rebuild_threshold": self.rebuild_threshold,
            "exact_filter_below": self.exact_filter_below,
        }

    def _snapshot(self) -> tuple[np.ndarray, bytes]:
        """Serialised index and sidecar bytes, taken together under the lock."""
        index_bytes = faiss.serialize_index(self._index)  # (bytes,) uint8
        sidecar = {
            "format": _FORMAT,
            "config": self._config(),
            "ntotal": int(self._index.ntotal),
            "trained": self._trained,
            "next_id": self._next_id,
            "tombstones": sorted(self._tombstones),
            "metadata": [[i, m] for i, m in self._meta.items()],
        }
        return index_bytes, json.dumps(sidecar).encode()

    def _write_files(self, directory: Path, index_bytes: np.ndarray, sidecar: bytes) -> None:
        write_file_durable(directory / _INDEX_FILE, index_bytes.data)
        write_file_durable(directory / _META_FILE, sidecar)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Durably save index + metadata to the directory ``path`` (see module docstring)."""
        with self._lock:
            index_bytes, sidecar = self._snapshot()
        commit_version(path, lambda d: self._write_files(d, index_bytes, sidecar))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> FaissVectorStore:
        """Open the store saved at ``path``.

        Args:
            path: the directory given to :meth:`save`.
            mmap: map the index file read-only instead of reading it into memory; the
                returned store refuses writes with :class:`ReadOnlyStoreError`.
        """
        return cls._load_dir(current_version_dir(path), mmap=mmap)

    @classmethod
    def _load_dir(cls, directory: Path, *, mmap: bool = False) -> FaissVectorStore:
        sidecar = json.loads((directory / _META_FILE).read_text())
        if sidecar.get("format") != _FORMAT:
            raise ValueError(
                f"{directory} is not a {_FORMAT} store (format={sidecar.get('format')!r})"
            )
        cfg = sidecar["config"]
        store = cls(
            cfg["dim"],
            cfg["metric"],
            cfg["kind"],
            nlist=cfg["nlist"],
            nprobe=cfg["nprobe"],
            train_size=cfg["train_size"],
            hnsw_m=cfg["hnsw_m"],
            ef_construction=cfg["ef_construction"],
            ef_search=cfg["ef_search"],
            rebuild_threshold=cfg["rebuild_threshold"],
            exact_filter_below=cfg["exact_filter_below"],
        )
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(directory / _INDEX_FILE), flags)
        if index.ntotal != sidecar["ntotal"] or index.d != store.dim:
            raise ValueError(
                f"{directory}: index has ntotal={index.ntotal}, d={index.d} but the sidecar says "
                f"ntotal={sidecar['ntotal']}, d={store.dim}"
            )
        store._index = index
        store._trained = bool(sidecar["trained"])
        store._next_id = int(sidecar["next_id"])
        store._tombstones = {int(i) for i in sidecar["tombstones"]}
        store._meta = {int(i): m for i, m in sidecar["metadata"]}
        store._read_only = mmap
        return store
