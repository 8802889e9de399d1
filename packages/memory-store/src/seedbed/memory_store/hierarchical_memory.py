"""Two-tier vector memory with the seed's dual sync/async API.

* **Hot tier**: the most recent ``hot_capacity`` vectors, exact, in an in-memory
  :class:`VectorStore`.
* **Cold tier**: everything older. Without a compressor it holds the vectors themselves; with
  a :class:`StreamingCompressor` it holds their codes (``latent_dim`` floats each). The cold
  store is a :class:`VectorStore` (``backend="memory"``), a :class:`FaissVectorStore`
  (``backend="faiss"``, the default when a ``path`` is given) or an
  :class:`AsyncFaissVectorStore` (``use_async=True``).

Every added vector also feeds the compressor's uniform reservoir; the first time vectors move
to the cold tier the autoencoder is fitted on that reservoir and frozen, since stored codes
depend on its weights. Because the autoencoder is an orthogonal projection, searching the
codes with the encoded query ranks exactly as searching the decoded vectors would, and the
scores are corrected by a per-query constant to equal the score against the decoded vector;
hot and cold results are therefore merged on one scale.

Dual API (seed 002): ``add``, ``delete``, ``search``, ``save`` and ``load`` block when called
from synchronous code (the coroutine runs to completion on a private per-thread event loop, as
``asyncio.run`` would) and return an ``asyncio.Task`` when an event
loop is running in the calling thread. Bad input raises at the call in both cases. The
coroutines ``aadd``, ``adelete``, ``asearch``, ``save_async``, ``load_async`` are the explicit
forms. ``push_remote``/``query_remote`` share the memory through a :class:`PgVectorStore`.

Retrieved vectors, scores and ids come back as tensors on the query's device.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch

from seedbed.memory_store._atomic import (
    commit_version,
    current_version_dir,
    fsync_dir,
    write_file_durable,
)
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
    normalize_rows,
    to_numpy,
)
from seedbed.memory_store.async_store import AsyncFaissVectorStore
from seedbed.memory_store.compression import StreamingCompressor
from seedbed.memory_store.faiss_store import FaissVectorStore
from seedbed.memory_store.vector_store import VectorStore, npz_bytes

__all__ = ["HierarchicalMemory", "MemorySearchResult"]

T = TypeVar("T")
_FORMAT = "seedbed.HierarchicalMemory/1"
BACKENDS = ("auto", "memory", "faiss")


class MemorySearchResult(NamedTuple):
    """Search result; tensors on the query's device."""

    scores: torch.Tensor  # (Q, k) float32: similarity (dot/cosine) or squared distance (l2)
    ids: torch.Tensor  # (Q, k) int64, -1 where fewer than k matched
    metadata: list[list[dict[str, Any] | None]]  # Q lists of k (None where missing)
    vectors: torch.Tensor  # (Q, k, D) retrieved vectors (decoded if compressed), 0 where missing


_local = threading.local()


def _run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on this thread's private event loop (``asyncio.run``
    semantics without creating a loop and installing signal handlers on every call)."""
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coro)


def _dispatch(coro: Coroutine[Any, Any, T]) -> T | asyncio.Task[T]:
    """Block on ``coro`` from sync code; schedule it as a Task inside a running loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _run_blocking(coro)
    return loop.create_task(coro)


class HierarchicalMemory:
    """Hot exact tier + cold (optionally compressed) tier, sync or async.

    Args:
        dim: vector dimension D.
        metric: ``"dot"``, ``"cosine"`` or ``"l2"`` (cosine is not available with a compressor).
        compressor: optional :class:`StreamingCompressor` (``compressor.dim == dim``); the cold
            tier then stores ``latent_dim`` codes.
        hot_capacity: vectors kept exact in the hot tier (0: everything goes to the cold tier).
        path: default directory for :meth:`save`; also selects the FAISS backend.
        use_async: use :class:`AsyncFaissVectorStore` for the cold tier.
        backend: ``"auto"`` (FAISS if ``path`` or ``use_async``, else in-memory), ``"memory"``
            or ``"faiss"``.
        kind: FAISS index kind for the cold tier (``"flat"``, ``"ivf"``, ``"hnsw"``).
        remote: optional :class:`PgVectorStore` for :meth:`push_remote`/:meth:`query_remote`.
        node_id: name recorded with every pushed row (default ``host-pid``).
        fit_steps: Adam steps when the compressor is fitted.
        **store_kwargs: passed to the FAISS store (``nlist``, ``ef_search``, ``max_workers``...).

    Example:
        >>> mem = HierarchicalMemory(64, hot_capacity=256)
        >>> ids = mem.add(torch.randn(1000, 64))                # blocks in sync code
        >>> res = mem.search(torch.randn(4, 64), k=8)         # res.vectors: (4, 8, 64)
        >>> async def main():
        ...     task = mem.add(torch.randn(10, 64))             # an asyncio.Task here
        ...     await task
    """

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "dot",
        compressor: StreamingCompressor | None = None,
        hot_capacity: int = 4096,
        path: str | os.PathLike[str] | None = None,
        use_async: bool = False,
        backend: str = "auto",
        kind: str = "flat",
        remote: Any = None,
        node_id: str | None = None,
        fit_steps: int = 200,
        **store_kwargs: Any,
    ) -> None:
        self.dim = check_dim(dim)
        self.metric = check_metric(metric)
        if compressor is not None:
            if not isinstance(compressor, StreamingCompressor):
                raise TypeError(
                    f"compressor must be a StreamingCompressor, got {type(compressor).__name__}"
                )
            if compressor.dim != dim:
                raise ValueError(f"compressor.dim must equal dim={dim}, got {compressor.dim}")
            if metric == "cosine":
                raise ValueError(
                    "metric='cosine' cannot be used with a compressor (codes keep dot and l2 only)"
                )
        if not isinstance(hot_capacity, int) or hot_capacity < 0:
            raise ValueError(f"hot_capacity must be an int >= 0, got {hot_capacity!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if use_async and backend == "memory":
            raise ValueError("use_async=True needs the FAISS backend, got backend='memory'")
        if not isinstance(fit_steps, int) or fit_steps < 1:
            raise ValueError(f"fit_steps must be a positive int, got {fit_steps!r}")
        self.compressor = compressor
        self.hot_capacity = hot_capacity
        self.path = None if path is None else Path(path)
        self.use_async = bool(use_async)
        self.backend = (
            ("faiss" if (path is not None or use_async) else "memory")
            if backend == "auto"
            else backend
        )
        self.kind = kind
        self.remote = remote
        self.node_id = node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.fit_steps = fit_steps
        self.store_kwargs = dict(store_kwargs)
        self.code_dim = compressor.latent_dim if compressor is not None else dim
        self.hot = VectorStore(dim, metric)
        self.cold: Any = self._new_cold()
        self._lock = threading.RLock()  # bookkeeping only; never held across an await
        self._fifo: OrderedDict[int, None] = OrderedDict()  # hot ids, oldest first
        self._moving: dict[int, bool] = {}  # id -> deleted-while-moving, hot -> cold in flight
        self._unpushed: OrderedDict[int, None] = OrderedDict()  # ids not yet pushed to remote
        self._next_id = 0
        self._count = 0

    def _new_cold(self) -> Any:
        if self.backend == "memory":
            if self.store_kwargs:
                raise ValueError(f"store options {sorted(self.store_kwargs)} need backend='faiss'")
            return VectorStore(self.code_dim, self.metric)
        kw = dict(self.store_kwargs)
        if self.use_async:
            return AsyncFaissVectorStore(self.code_dim, self.metric, self.kind, **kw)
        kw.pop("max_workers", None)
        return FaissVectorStore(self.code_dim, self.metric, self.kind, **kw)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return (
            f"HierarchicalMemory(dim={self.dim}, metric={self.metric!r}, size={len(self)}, "
            f"hot={len(self.hot)}, cold={type(self.cold).__name__}, "
            f"compressed={self.compressor is not None})"
        )

    def __contains__(self, id_: object) -> bool:
        return id_ in self.hot or id_ in self.cold

    @property
    def ids(self) -> np.ndarray:
        """(N,) int64 stored ids, sorted."""
        with self._lock:
            cold_ids = self.cold.ids
            return np.union1d(self.hot.ids, cold_ids[~np.isin(cold_ids, list(self._moving))])

    # ------------------------------------------------------------------ cold-tier plumbing
    async def _cold_add(
        self, codes: np.ndarray, ids: np.ndarray, meta: list[dict[str, Any]]
    ) -> None:
        if self.use_async:
            await self.cold.aadd(codes, ids, meta)
        else:
            self.cold.add(codes, ids, meta)

    async def _cold_delete(self, ids: list[int]) -> int:
        if not ids:
            return 0
        if self.use_async:
            return int(await self.cold.adelete(ids))
        return int(self.cold.delete(ids))

    async def _cold_search(self, zq: np.ndarray, k: int, flt: MetadataFilter) -> Any:
        if self.use_async:
            return await self.cold.asearch(zq, k, flt)
        return self.cold.search(zq, k, flt)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        """Full vectors (N, D) -> cold-tier codes (N, code_dim); fits the compressor once."""
        comp = self.compressor
        if comp is None:
            return x
        if not comp.fitted:
            comp.fit(self.fit_steps)
        comp.freeze()
        with torch.no_grad():
            dev = comp.mean.device
            return comp.encode(torch.from_numpy(x).to(dev)).float().cpu().numpy()

    def _decode(self, z: np.ndarray) -> np.ndarray:
        comp = self.compressor
        if comp is None:
            return z
        with torch.no_grad():
            return comp.decode(torch.from_numpy(z).to(comp.mean.device)).float().cpu().numpy()

    def _code_query(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encoded queries and the per-query constant that turns a code score into the score
        against the decoded vector: dot -> q.mu, l2 -> |(I - W^T W)(q - mu)|^2."""
        comp = self.compressor
        if comp is None or not comp.fitted:
            return q, np.zeros(len(q), np.float32)
        with torch.no_grad():
            qt = torch.from_numpy(q).to(comp.mean.device)
            if self.metric == "dot":  # q . (W^T z + mu) = (W q) . z + q . mu
                z = qt @ comp.weight.T  # (Q, r)
                const = qt @ comp.mean
            else:  # |q - mu - W^T z|^2 = |W (q - mu) - z|^2 + |residual of q - mu|^2
                z = comp.encode(qt)
                resid = (qt - comp.mean) - z @ comp.weight
                const = resid.pow(2).sum(-1)
            return z.float().cpu().numpy(), const.float().cpu().numpy()

    # ------------------------------------------------------------------ add
    def _prepare_add(
        self, vectors: Any, ids: Any, metadata: Any
    ) -> tuple[np.ndarray, np.ndarray | None, list[dict[str, Any]]]:
        x = check_vectors(vectors, self.dim)
        if self.metric == "cosine":
            x = normalize_rows(x)
        return x, check_ids(ids, len(x)), check_metadata(metadata, len(x))

    async def _aadd(
        self, x: np.ndarray, ids: np.ndarray | None, meta: list[dict[str, Any]]
    ) -> np.ndarray:
        n = len(x)
        with self._lock:
            if ids is None:
                ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            else:
                dup = [
                    int(i)
                    for i in ids
                    if int(i) in self.hot or int(i) in self.cold or int(i) in self._moving
                ]
                if dup:
                    raise ValueError(f"ids already in the memory: {dup[:10]}")
            if n == 0:
                return ids
            if self.compressor is not None:
                self.compressor.observe(x)
            self.hot.add(x, ids, meta)
            self._fifo.update((int(i), None) for i in ids)
            self._unpushed.update((int(i), None) for i in ids)
            self._count += n
            self._next_id = max(self._next_id, int(ids.max()) + 1)
            over = len(self._fifo) - self.hot_capacity
            evict = [self._fifo.popitem(last=False)[0] for _ in range(max(over, 0))]
            if not evict:
                return ids
            for i in evict:
                self._moving[i] = False
            vecs, metas = self.hot.get(evict)
            codes = self._encode(vecs)
        evict_arr = np.array(evict, dtype=np.int64)
        try:
            await self._cold_add(codes, evict_arr, metas)
        except BaseException:
            with self._lock:  # put them back, oldest first
                for i in reversed(evict):
                    self._moving.pop(i, None)
                    self._fifo[i] = None
                    self._fifo.move_to_end(i, last=False)
            raise
        with self._lock:
            self.hot.delete(evict_arr)
            dead = [i for i in evict if self._moving.pop(i)]
        await self._cold_delete(dead)
        return ids

    async def aadd(self, vectors: Any, ids: Any = None, metadata: Any = None) -> np.ndarray:
        """Add vectors (N, D) (torch on any device, numpy or lists). Returns (N,) int64 ids."""
        return await self._aadd(*self._prepare_add(vectors, ids, metadata))

    def add(
        self, vectors: Any, ids: Any = None, metadata: Any = None
    ) -> np.ndarray | asyncio.Task[np.ndarray]:
        """:meth:`aadd`, blocking in sync code, an ``asyncio.Task`` inside a running loop."""
        return _dispatch(self._aadd(*self._prepare_add(vectors, ids, metadata)))

    # ------------------------------------------------------------------ delete
    async def _adelete(self, want: np.ndarray) -> int:
        with self._lock:
            hot_ids = [i for i in want.tolist() if i in self.hot]
            cold_ids = [i for i in want.tolist() if i not in self.hot and i not in self._moving]
            for i in hot_ids:
                self._fifo.pop(i, None)
                if i in self._moving:
                    self._moving[i] = True  # removed from cold when its move lands
            removed = self.hot.delete(hot_ids)
            for i in want.tolist():
                self._unpushed.pop(i, None)
            self._count -= removed
        n_cold = await self._cold_delete(cold_ids)
        with self._lock:
            self._count -= n_cold
        return removed + n_cold

    async def adelete(self, ids: Any) -> int:
        """Remove ids from whichever tier holds them; returns how many were removed."""
        return await self._adelete(check_delete_ids(ids))

    def delete(self, ids: Any) -> int | asyncio.Task[int]:
        return _dispatch(self._adelete(check_delete_ids(ids)))

    # ------------------------------------------------------------------ search
    def _prepare_search(
        self, queries: Any, k: int, filter: MetadataFilter
    ) -> tuple[np.ndarray, int, MetadataFilter, torch.device, torch.dtype]:
        if isinstance(queries, torch.Tensor):
            device = queries.device
            dtype = queries.dtype if queries.is_floating_point() else torch.float32
        else:
            device, dtype = torch.device("cpu"), torch.float32
        q = check_vectors(queries, self.dim, name="queries")
        if self.metric == "cosine":
            q = normalize_rows(q, name="queries")
        return q, check_k(k), check_filter(filter), device, dtype

    async def _asearch(
        self, q: np.ndarray, k: int, flt: MetadataFilter, device: torch.device, dtype: torch.dtype
    ) -> MemorySearchResult:
        nq = len(q)
        worst = np.inf if self.metric == "l2" else -np.inf
        qp = q  # validated (and normalised for cosine) by _prepare_search
        hs, hi, hm, hv = self.hot._search(qp, k, flt, want_vectors=True)  # exact hot tier
        if len(self.cold) == 0 or (self.compressor is not None and not self.compressor.fitted):
            cs = np.full((nq, k), worst, np.float32)
            ci = np.full((nq, k), -1, np.int64)
            cm: list[list[dict[str, Any] | None]] = [[None] * k for _ in range(nq)]
            cv = np.zeros((nq, k, self.dim), np.float32)
        else:
            zq, const = self._code_query(qp)
            if isinstance(self.cold, VectorStore):
                cs, ci, cm, codes = self.cold._search(zq, k, flt, want_vectors=True)
            else:
                cs, ci, cm = await self._cold_search(zq, k, flt)
                codes = await self._cold_codes(ci)
            found = ci >= 0
            cs = np.where(found, cs + const[:, None], cs).astype(np.float32)
            assert codes is not None
            cv = np.where(
                found[..., None],
                self._decode(codes.reshape(-1, self.code_dim)).reshape(nq, k, self.dim),
                0.0,
            )
        scores = np.concatenate([hs, cs], axis=1)  # (Q, 2k)
        ids = np.concatenate([hi, ci], axis=1)
        vecs = np.concatenate([hv, cv.astype(np.float32)], axis=1)  # (Q, 2k, D)
        order = np.argsort(scores if self.metric == "l2" else -scores, axis=1, kind="stable")
        sorted_ids = np.take_along_axis(ids, order, axis=1)
        dup = np.zeros(sorted_ids.shape, dtype=bool)
        srt = np.sort(ids, axis=1)
        for r in np.flatnonzero(((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any(axis=1)):
            seen: set[int] = set()  # an id caught in both tiers mid-move: keep its best copy
            for j, i in enumerate(sorted_ids[r].tolist()):
                dup[r, j] = i >= 0 and i in seen
                seen.add(i)
        order = np.take_along_axis(order, np.argsort(dup, axis=1, kind="stable"), axis=1)[
            :, :k
        ]  # (Q, k)
        out_i = np.take_along_axis(ids, order, axis=1)
        out_s = np.take_along_axis(scores, order, axis=1)
        out_v = np.take_along_axis(vecs, order[..., None], axis=1)
        missing = out_i < 0
        out_s[missing] = worst
        out_v[missing] = 0.0
        meta = [a + b for a, b in zip(hm, cm)]
        out_m = [
            [meta[r][c] if out_i[r, j] >= 0 else None for j, c in enumerate(row)]
            for r, row in enumerate(order.tolist())
        ]
        return MemorySearchResult(
            torch.from_numpy(out_s).to(device),
            torch.from_numpy(out_i).to(device),
            out_m,
            torch.from_numpy(out_v).to(device=device, dtype=dtype),
        )

    async def _cold_codes(self, ids: np.ndarray) -> np.ndarray:
        """Stored codes (Q, k, code_dim) of a FAISS cold tier for search-result ids (0 if gone)."""
        out = np.zeros((*ids.shape, self.code_dim), np.float32)
        found = ids >= 0
        if not found.any():
            return out
        uniq = np.unique(ids[found])
        got = (
            await asyncio.to_thread(self._cold_get, uniq.tolist())
            if self.use_async
            else self._cold_get(uniq.tolist())
        )
        table = np.zeros((len(uniq), self.code_dim), np.float32)
        for n, i in enumerate(uniq.tolist()):
            if i in got:
                table[n] = got[i]
        out[found] = table[np.searchsorted(uniq, ids[found])]
        return out

    def _cold_get(self, ids: list[int]) -> dict[int, np.ndarray]:
        """Codes of the ids still in the cold tier (ids deleted meanwhile are skipped)."""
        alive = [i for i in ids if i in self.cold]
        if not alive:
            return {}
        try:
            codes, _ = self.cold.get(alive)
            return dict(zip(alive, codes))
        except KeyError:  # deleted concurrently: one by one
            out: dict[int, np.ndarray] = {}
            for i in alive:
                with contextlib.suppress(KeyError):
                    out[i] = self.cold.get([i])[0][0]
            return out

    async def asearch(
        self, queries: Any, k: int, filter: MetadataFilter = None
    ) -> MemorySearchResult:
        """Top-k over both tiers. queries: (Q, D) or (D,); results on the query's device."""
        return await self._asearch(*self._prepare_search(queries, k, filter))

    def search(
        self, queries: Any, k: int, filter: MetadataFilter = None
    ) -> MemorySearchResult | asyncio.Task[MemorySearchResult]:
        return _dispatch(self._asearch(*self._prepare_search(queries, k, filter)))

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "metric": self.metric,
            "hot_capacity": self.hot_capacity,
            "backend": self.backend,
            "kind": self.kind,
            "use_async": self.use_async,
            "node_id": self.node_id,
            "fit_steps": self.fit_steps,
            "store_kwargs": self.store_kwargs,
            "compressed": self.compressor is not None,
        }

    def _snapshot(self) -> dict[str, bytes]:
        """Every file of a saved memory (relative path -> bytes), taken under the lock."""
        files: dict[str, bytes] = {}
        with self._lock:
            files["hot.npz"] = npz_bytes(self.hot._state_arrays())
            if isinstance(self.cold, VectorStore):
                files["cold.npz"] = npz_bytes(self.cold._state_arrays())
            else:
                if isinstance(self.cold, AsyncFaissVectorStore):
                    with self.cold._rw.read():
                        index_bytes, sidecar = self.cold.store._snapshot()
                else:
                    with self.cold._lock:
                        index_bytes, sidecar = self.cold._snapshot()
                files["cold/index.faiss"] = index_bytes.tobytes()
                files["cold/meta.json"] = sidecar
            if self.compressor is not None:
                files |= self.compressor.to_files()
            # Entries mid-move still sit in the hot tier (oldest first); a copy that already
            # landed in the cold tier is dropped on load.
            moving_alive = [i for i, dead in self._moving.items() if not dead]
            state = {
                "format": _FORMAT,
                "config": self._config(),
                "next_id": self._next_id,
                "count": self._count,
                "fifo": moving_alive + list(self._fifo),
                "drop_from_cold": [i for i in self._moving if i in self.cold],
                "unpushed": list(self._unpushed),
            }
            files["memory.json"] = json.dumps(state).encode()
        return files

    @staticmethod
    def _commit(target: Path, files: dict[str, bytes]) -> Path:
        def write(d: Path) -> None:
            for name, data in files.items():
                if not (d / name).parent.exists():
                    (d / name).parent.mkdir()
                write_file_durable(d / name, data)
            if (d / "cold").is_dir():
                fsync_dir(d / "cold")

        return commit_version(target, write)

    async def save_async(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Save both tiers, the compressor and the bookkeeping as one atomic version
        (see ``_atomic.commit_version``). Returns the committed version directory."""
        target = self._target(path)
        files = self._snapshot()
        return await asyncio.to_thread(self._commit, target, files)

    def save(self, path: str | os.PathLike[str] | None = None) -> Path | asyncio.Task[Path]:
        self._target(path)
        return _dispatch(self.save_async(path))

    def save_sync(self, path: str | os.PathLike[str] | None = None) -> Path:
        """:meth:`save_async` run in the calling thread, whether or not a loop is running."""
        return self._commit(self._target(path), self._snapshot())

    def _target(self, path: str | os.PathLike[str] | None) -> Path:
        if path is None and self.path is None:
            raise ValueError("save() needs a path (none given here or at construction)")
        return Path(path) if path is not None else self.path  # type: ignore[return-value]

    @classmethod
    async def load_async(
        cls,
        path: str | os.PathLike[str],
        *,
        use_async: bool | None = None,
        remote: Any = None,
        device: str | torch.device = "cpu",
    ) -> HierarchicalMemory:
        """Open a memory saved by :meth:`save` (``use_async`` overrides the saved choice)."""
        return await asyncio.to_thread(
            cls._load_sync, Path(path), use_async, remote, torch.device(device)
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        use_async: bool | None = None,
        remote: Any = None,
        device: str | torch.device = "cpu",
    ) -> HierarchicalMemory | asyncio.Task[HierarchicalMemory]:
        if not Path(path).exists():
            raise FileNotFoundError(f"no saved memory at {path}")
        return _dispatch(cls.load_async(path, use_async=use_async, remote=remote, device=device))

    @classmethod
    def load_sync(
        cls,
        path: str | os.PathLike[str],
        *,
        use_async: bool | None = None,
        remote: Any = None,
        device: str | torch.device = "cpu",
    ) -> HierarchicalMemory:
        """:meth:`load_async` run in the calling thread, whether or not a loop is running."""
        return cls._load_sync(Path(path), use_async, remote, torch.device(device))

    @classmethod
    def _load_sync(
        cls, path: Path, use_async: bool | None, remote: Any, device: torch.device
    ) -> HierarchicalMemory:
        d = current_version_dir(path)
        state = json.loads((d / "memory.json").read_text())
        if state.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a {_FORMAT} directory")
        cfg = state["config"]
        comp = None
        if cfg["compressed"]:
            comp = StreamingCompressor.from_files(
                {n: (d / n).read_bytes() for n in ("compressor.json", "compressor.safetensors")}
            ).to(device)
        ua = cfg["use_async"] if use_async is None else use_async
        mem = cls(
            cfg["dim"],
            metric=cfg["metric"],
            compressor=comp,
            hot_capacity=cfg["hot_capacity"],
            path=path,
            use_async=ua,
            backend="faiss" if ua else cfg["backend"],
            kind=cfg["kind"],
            remote=remote,
            node_id=cfg["node_id"],
            fit_steps=cfg["fit_steps"],
            **cfg["store_kwargs"],
        )
        mem.hot = VectorStore.load(d / "hot.npz")
        if (d / "cold.npz").exists():
            cold: Any = VectorStore.load(d / "cold.npz")
            if mem.backend == "faiss":  # saved in memory, opened as FAISS
                store = mem._new_cold()
                if len(cold):
                    store.add(cold.vectors, cold.ids, cold.get(cold.ids)[1])
                cold = store
        else:
            inner = FaissVectorStore._load_dir(d / "cold")
            if mem.backend == "memory":
                cold = VectorStore(mem.code_dim, mem.metric)
                if len(inner):
                    vecs, metas = inner.get(inner.ids)
                    cold.add(vecs, inner.ids, metas)
            elif ua:
                workers = cfg["store_kwargs"].get("max_workers", 4)
                cold = AsyncFaissVectorStore(
                    inner.dim, inner.metric, inner.kind, store=inner, max_workers=workers
                )
            else:
                cold = inner
        if state["drop_from_cold"]:
            cold.delete(state["drop_from_cold"])
        mem.cold = cold
        mem._fifo = OrderedDict((int(i), None) for i in state["fifo"])
        mem._unpushed = OrderedDict((int(i), None) for i in state["unpushed"])
        mem._next_id = int(state["next_id"])
        mem._count = int(state["count"])
        if mem._count != len(mem.hot) + len(cold):
            raise ValueError(
                f"{path}: saved count {mem._count} != hot {len(mem.hot)} + cold {len(cold)}"
            )
        return mem

    # ------------------------------------------------------------------ remote (C-8)
    def _remote(self, remote: Any) -> Any:
        r = remote if remote is not None else self.remote
        if r is None:
            raise ValueError(
                "no remote store: pass remote= here or at construction (a PgVectorStore)"
            )
        if r.dim != self.dim:
            raise ValueError(f"remote store has dim {r.dim}, this memory has dim {self.dim}")
        return r

    async def _full_vectors(
        self, ids: list[int]
    ) -> tuple[list[int], np.ndarray, list[dict[str, Any]]]:
        """Full-dimension vectors (decoded for cold entries) of the ids still present."""
        with self._lock:
            hot = [i for i in ids if i in self.hot]
        hv, hm = self.hot.get(hot) if hot else (np.empty((0, self.dim), np.float32), [])
        rest = [i for i in ids if i not in set(hot) and i in self.cold]
        if rest:
            codes, cm = await asyncio.to_thread(self.cold.get, rest)
            cv = self._decode(codes)
        else:
            cv, cm = np.empty((0, self.dim), np.float32), []
        return hot + rest, np.concatenate([hv, cv]), list(hm) + list(cm)

    async def apush_remote(self, remote: Any = None, *, batch_size: int = 512) -> np.ndarray:
        """Push every entry not yet pushed to the shared store, one transaction per batch.

        Pushed rows carry the local metadata plus ``node`` (this memory's ``node_id``) and
        ``local_id``. An entry is marked pushed only after its batch commits, so a crash
        loses at most the batch in flight, which the next push sends again.

        Returns:
            (M,) int64 ids assigned by the remote store.
        """
        store = self._remote(remote)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        with self._lock:
            todo = list(self._unpushed)
        out: list[np.ndarray] = []
        for b in range(0, len(todo), batch_size):
            ids, vecs, metas = await self._full_vectors(todo[b : b + batch_size])
            if not ids:
                continue
            rmeta = [{**m, "node": self.node_id, "local_id": i} for i, m in zip(ids, metas)]
            out.append(await store.aadd(vecs, metadata=rmeta))
            with self._lock:
                for i in ids:
                    self._unpushed.pop(i, None)
        return np.concatenate(out) if out else np.empty(0, np.int64)

    def push_remote(
        self, remote: Any = None, *, batch_size: int = 512
    ) -> np.ndarray | asyncio.Task[np.ndarray]:
        self._remote(remote)
        return _dispatch(self.apush_remote(remote, batch_size=batch_size))

    async def aquery_remote(
        self, queries: Any, k: int, filter: MetadataFilter = None, *, remote: Any = None
    ) -> MemorySearchResult:
        """Search the shared store (every node's pushes). Results on the query's device."""
        store = self._remote(remote)
        q, k, flt, device, dtype = self._prepare_search(queries, k, filter)
        scores, ids, meta = await store.asearch(q, k, flt)
        vecs = np.zeros((len(q), k, self.dim), np.float32)
        found = ids >= 0
        if found.any():
            uniq = np.unique(ids[found])
            got, _ = await store.aget(uniq)
            pos = np.searchsorted(uniq, ids[found])
            vecs[found] = got[pos]
        return MemorySearchResult(
            torch.from_numpy(scores).to(device),
            torch.from_numpy(ids).to(device),
            meta,
            torch.from_numpy(vecs).to(device=device, dtype=dtype),
        )

    def query_remote(
        self, queries: Any, k: int, filter: MetadataFilter = None, *, remote: Any = None
    ) -> MemorySearchResult | asyncio.Task[MemorySearchResult]:
        self._remote(remote)
        self._prepare_search(queries, k, filter)
        return _dispatch(self.aquery_remote(queries, k, filter, remote=remote))

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Shut the async cold store's thread pool down (no-op for sync stores)."""
        if isinstance(self.cold, AsyncFaissVectorStore):
            self.cold.shutdown()

    def vectors_of(self, ids: Any) -> torch.Tensor:
        """Full-dimension vectors of ids (decoded for cold entries), (M, D) on CPU."""
        req = [int(i) for i in np.atleast_1d(to_numpy(ids)).tolist()]
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            got, vecs, _ = _run_blocking(self._full_vectors(req))
        else:
            raise RuntimeError("vectors_of() blocks; inside an event loop use _full_vectors")
        if len(got) != len(req):
            missing = sorted(set(req) - set(got))
            raise KeyError(f"ids not in memory: {missing[:10]}")
        order = {i: r for r, i in enumerate(got)}
        return torch.from_numpy(vecs[[order[i] for i in req]])
