"""Input checks shared by every vector store.

Every public store method validates its whole input before it touches any state, so a call
that raises leaves the store exactly as it was.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

METRICS = ("dot", "cosine", "l2")

# A metadata filter: a dict matched by equality on every key, or a predicate on the metadata.
MetadataFilter = Mapping[str, Any] | Callable[[dict[str, Any]], bool] | None

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_metric(metric: str) -> str:
    """Return ``metric`` if it is one of :data:`METRICS`, else raise ValueError."""
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    return int(dim)


def to_numpy(x: Any) -> np.ndarray:
    """Numpy view/copy of an array-like (numpy, torch tensor on any device, nested lists)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def check_vectors(vectors: Any, dim: int, *, name: str = "vectors") -> np.ndarray:
    """Validate and convert to a C-contiguous float32 array of shape (N, dim).

    A 1-D input of length ``dim`` is taken as one vector. NaN/Inf, a wrong dimension or a
    non-numeric input raise ValueError.
    """
    try:
        arr = to_numpy(vectors)
    except Exception as e:  # e.g. ragged lists
        raise ValueError(f"{name} must be a numeric array of shape (N, {dim}), got {e}") from e
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric with shape (N, {dim}), got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}), got {tuple(arr.shape)}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).any(axis=1).sum())
        raise ValueError(f"{name} must be finite, got NaN or Inf in {bad} of {len(out)} rows")
    return out


def check_ids(ids: Any, n: int) -> np.ndarray | None:
    """Validate explicit ids: n distinct non-negative int64 values (None passes through)."""
    if ids is None:
        return None
    arr = to_numpy(ids)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(arr.shape)}")
    if len(arr) != n:
        raise ValueError(f"ids must have one entry per vector: expected {n}, got {len(arr)}")
    if n and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if n and arr.min() < 0:
        raise ValueError(f"ids must be >= 0, got {int(arr.min())}")
    if len(np.unique(arr)) != n:
        raise ValueError("ids must be distinct within one call")
    return arr


def check_metadata(metadata: Any, n: int) -> list[dict[str, Any]]:
    """Validate metadata: None (empty dicts) or a sequence of n JSON-serialisable dicts."""
    if metadata is None:
        return [{} for _ in range(n)]
    if isinstance(metadata, Mapping) or not isinstance(metadata, Sequence):
        raise ValueError(
            f"metadata must be a sequence of {n} dicts (one per vector), got {type(metadata).__name__}"
        )
    if len(metadata) != n:
        raise ValueError(
            f"metadata must have one entry per vector: expected {n}, got {len(metadata)}"
        )
    out: list[dict[str, Any]] = []
    for i, m in enumerate(metadata):
        if m is None:
            m = {}
        if not isinstance(m, Mapping):
            raise ValueError(f"metadata[{i}] must be a dict or None, got {type(m).__name__}")
        out.append(dict(m))
    try:  # one pass over everything; only on failure look for the culprit
        json.dumps(out, allow_nan=False)
        ok = all(isinstance(k, str) for d in out for k in d)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        for i, d in enumerate(out):
            try:
                json.dumps(d, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise ValueError(f"metadata[{i}] must be JSON-serialisable: {e}") from e
            if not all(isinstance(k, str) for k in d):
                raise ValueError(f"metadata[{i}] keys must be strings, got {list(d)}")
    return out


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def check_delete_ids(ids: Any) -> np.ndarray:
    arr = to_numpy(ids)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(arr.shape)}")
    if len(arr) and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    return np.unique(arr.astype(np.int64, copy=False))


def check_filter(filter: MetadataFilter) -> MetadataFilter:
    if filter is None or callable(filter) or isinstance(filter, Mapping):
        return filter
    raise ValueError(
        f"filter must be None, a dict (equality match) or a callable(metadata) -> bool, "
        f"got {type(filter).__name__}"
    )


def matches(filter: MetadataFilter, meta: dict[str, Any]) -> bool:
    """True when ``meta`` passes ``filter`` (dict: every key present and equal)."""
    if filter is None:
        return True
    if isinstance(filter, Mapping):
        return all(k in meta and meta[k] == v for k, v in filter.items())
    return bool(filter(meta))


def check_identifier(name: str, what: str = "identifier") -> str:
    """A SQL identifier we are willing to interpolate: ``[A-Za-z_][A-Za-z0-9_]{0,62}``."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"{what} must match [A-Za-z_][A-Za-z0-9_]{{0,62}}, got {name!r}")
    return name


def normalize_rows(x: np.ndarray, *, name: str = "vectors") -> np.ndarray:
    """L2-normalise rows (cosine metric); zero rows raise ValueError."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if len(x) and float(norms.min()) == 0.0:
        raise ValueError(f"{name} must be non-zero for the cosine metric")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def empty_score(metric: str) -> float:
    """Score used to pad missing results: worst possible for the metric."""
    return math.inf if metric == "l2" else -math.inf
