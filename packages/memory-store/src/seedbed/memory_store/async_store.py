"""Thread-pool front end for :class:`FaissVectorStore`: concurrent searches, exclusive writes.

FAISS indexes may be searched from many threads at once, but an ``add``/``remove`` running
beside anything else corrupts them. Every operation here runs on a worker thread under a
readers-writer lock: searches (and ``len``, ``get``, the snapshot of ``save``) take it shared,
``add`` and ``delete`` take it exclusively. Writers are preferred, so a stream of searches
cannot starve them.

Three ways in: ``add_async``/``search_async``/``delete_async``/``save_async`` return
``concurrent.futures.Future``s; ``aadd``/``asearch``/``adelete``/``asave`` are coroutines; and
the plain ``add``/``search``/... block. ``async with`` (or ``with``) shuts the pool down on exit.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from seedbed.memory_store._atomic import commit_version
from seedbed.memory_store._validation import MetadataFilter, check_delete_ids, to_numpy
from seedbed.memory_store.faiss_store import FaissVectorStore
from seedbed.memory_store.vector_store import SearchResult

__all__ = ["AsyncFaissVectorStore", "RWLock"]

T = TypeVar("T")


class RWLock:
    """Writer-preferring readers-writer lock (many readers or one writer)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class AsyncFaissVectorStore:
    """A :class:`FaissVectorStore` driven by a thread pool.

    Args:
        dim: vector dimension.
        metric: ``"dot"``, ``"cosine"`` or ``"l2"``.
        kind: ``"flat"``, ``"ivf"`` or ``"hnsw"``.
        max_workers: worker threads.
        store: wrap this existing store instead of creating one (``dim``/``metric``/``kind``
            must then match it).
        **faiss_kwargs: passed to :class:`FaissVectorStore`.

    Example:
        >>> async with AsyncFaissVectorStore(64, kind="hnsw") as store:
        ...     ids = await store.aadd(vectors)
        ...     scores, ids, meta = await store.asearch(queries, k=5)
    """

    def __init__(
        self,
        dim: int,
        metric: str = "dot",
        kind: str = "flat",
        *,
        max_workers: int = 4,
        store: FaissVectorStore | None = None,
        **faiss_kwargs: Any,
    ) -> None:
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive int, got {max_workers!r}")
        if store is None:
            store = FaissVectorStore(dim, metric, kind, **faiss_kwargs)
        elif (store.dim, store.metric, store.kind) != (dim, metric, kind):
            raise ValueError(
                f"store has (dim, metric, kind)={(store.dim, store.metric, store.kind)}, "
                f"expected {(dim, metric, kind)}"
            )
        self.store = store
        self.max_workers = max_workers
        self._rw = RWLock()
        self._save_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="seedbed-faiss")
        self._closed = False

    # ------------------------------------------------------------------ plumbing
    @property
    def dim(self) -> int:
        return self.store.dim

    @property
    def metric(self) -> str:
        return self.store.metric

    @property
    def kind(self) -> str:
        return self.store.kind

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._closed:
            raise RuntimeError("AsyncFaissVectorStore is shut down; create a new one")
        return self._pool.submit(fn, *args)

    def _locked_write(self, fn: Callable[..., T], *args: Any) -> T:
        with self._rw.write():
            return fn(*args)

    def _locked_read(self, fn: Callable[..., T], *args: Any) -> T:
        with self._rw.read():
            return fn(*args)

    def __len__(self) -> int:
        with self._rw.read():
            return len(self.store)

    def __contains__(self, id_: object) -> bool:
        return id_ in self.store

    def __repr__(self) -> str:
        return f"AsyncFaissVectorStore({self.store!r}, max_workers={self.max_workers})"

    @property
    def ids(self) -> np.ndarray:
        with self._rw.read():
            return self.store.ids

    def get(self, ids: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
        req = np.atleast_1d(to_numpy(ids)).astype(np.int64)
        with self._rw.read():
            return self.store._get(req)

    # ------------------------------------------------------------------ futures
    def add_async(self, vectors: Any, ids: Any = None, metadata: Any = None) -> Future[np.ndarray]:
        """Schedule an add; bad input raises here, before anything is scheduled."""
        x, new_ids, meta = self.store._validate_add(vectors, ids, metadata)
        return self._submit(self._locked_write, self.store._add, x, new_ids, meta)

    def delete_async(self, ids: Any) -> Future[int]:
        self.store._check_writable()
        want = check_delete_ids(ids)
        return self._submit(self._locked_write, self.store._delete, want)

    def search_async(
        self, queries: Any, k: int, filter: MetadataFilter = None, *, exact: bool = False
    ) -> Future[SearchResult]:
        """Schedule a search (``exact``: see :meth:`FaissVectorStore.search`)."""
        q, k, flt = self.store._validate_search(queries, k, filter, exact)
        return self._submit(self._locked_read, self.store._search, q, k, flt, exact)

    def save_async(self, path: str | os.PathLike[str]) -> Future[None]:
        """Snapshot under the shared lock, then write durably (see FaissVectorStore.save)."""
        return self._submit(self._save, path)

    def _save(self, path: str | os.PathLike[str]) -> None:
        with self._rw.read():
            index_bytes, sidecar = self.store._snapshot()
        with self._save_lock:
            commit_version(path, lambda d: self.store._write_files(d, index_bytes, sidecar))

    # ------------------------------------------------------------------ coroutines
    async def aadd(self, vectors: Any, ids: Any = None, metadata: Any = None) -> np.ndarray:
        return await asyncio.wrap_future(self.add_async(vectors, ids, metadata))

    async def adelete(self, ids: Any) -> int:
        return await asyncio.wrap_future(self.delete_async(ids))

    async def asearch(
        self, queries: Any, k: int, filter: MetadataFilter = None, *, exact: bool = False
    ) -> SearchResult:
        return await asyncio.wrap_future(self.search_async(queries, k, filter, exact=exact))

    async def asave(self, path: str | os.PathLike[str]) -> None:
        await asyncio.wrap_future(self.save_async(path))

    # ------------------------------------------------------------------ blocking
    def add(self, vectors: Any, ids: Any = None, metadata: Any = None) -> np.ndarray:
        return self.add_async(vectors, ids, metadata).result()

    def delete(self, ids: Any) -> int:
        return self.delete_async(ids).result()

    def search(
        self, queries: Any, k: int, filter: MetadataFilter = None, *, exact: bool = False
    ) -> SearchResult:
        return self.search_async(queries, k, filter, exact=exact).result()

    def save(self, path: str | os.PathLike[str]) -> None:
        self.save_async(path).result()

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = False, max_workers: int = 4
    ) -> AsyncFaissVectorStore:
        store = FaissVectorStore.load(path, mmap=mmap)
        return cls(store.dim, store.metric, store.kind, max_workers=max_workers, store=store)

    # ------------------------------------------------------------------ lifetime
    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait`` finish what is queued first."""
        self._closed = True
        self._pool.shutdown(wait=wait)

    close = shutdown

    def __enter__(self) -> AsyncFaissVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    async def __aenter__(self) -> AsyncFaissVectorStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.shutdown)
