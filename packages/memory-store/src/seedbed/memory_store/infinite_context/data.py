"""Byte corpora and parallel chunk streams for infinite-context training.

The default corpus is the Python standard library's own ``.py`` sources (present on every
machine, nothing downloaded), concatenated in a fixed shuffled file order and read as bytes;
any text file can be used instead (``--data FILE``).
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import numpy as np
import torch

__all__ = ["ChunkStreams", "load_corpus", "split_corpus", "stdlib_corpus", "stdlib_files"]


def stdlib_files() -> list[Path]:
    """The standard library's ``.py`` files (``site-packages`` excluded) in a fixed shuffled
    order: sorted by path, then permuted with seed 0, so that any prefix of the corpus (and
    its held-out tail) is a sample of the whole library rather than its first directories."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("site-packages", "__pycache__")]
        rel = os.path.relpath(dirpath, root)
        found += [os.path.normpath(os.path.join(rel, f)) for f in filenames if f.endswith(".py")]
    if not found:
        raise FileNotFoundError(f"no .py files under the standard library at {root}")
    ordered = sorted(found, key=lambda f: Path(f).parts)
    return [root / ordered[i] for i in np.random.default_rng(0).permutation(len(ordered))]


def stdlib_corpus(max_bytes: int = 4_000_000) -> np.ndarray:
    """The standard library's ``.py`` files as one uint8 array (at most ``max_bytes``).

    Files are taken in :func:`stdlib_files` order, each followed by a newline, until
    ``max_bytes`` is reached.
    """
    if not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    parts: list[bytes] = []
    total = 0
    for p in stdlib_files():
        try:
            data = p.read_bytes() + b"\n"
        except OSError:
            continue
        parts.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    return np.frombuffer(b"".join(parts)[:max_bytes], dtype=np.uint8).copy()


def load_corpus(
    path: str | os.PathLike[str] | None = None, max_bytes: int = 4_000_000
) -> np.ndarray:
    """Bytes of ``path`` (at most ``max_bytes``), or the standard-library corpus if None."""
    if path is None:
        return stdlib_corpus(max_bytes)
    data = Path(path).read_bytes()[:max_bytes]
    if len(data) == 0:
        raise ValueError(f"{path} is empty")
    return np.frombuffer(data, dtype=np.uint8).copy()


def split_corpus(data: np.ndarray, eval_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out): the last ``eval_fraction`` of the bytes is held out."""
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    cut = int(len(data) * (1.0 - eval_fraction))
    if cut < 2 or len(data) - cut < 2:
        raise ValueError(f"corpus of {len(data)} bytes is too small to split")
    return data[:cut], data[cut:]


class ChunkStreams:
    """B parallel byte streams read chunk by chunk, each starting at its own offset.

    Stream b starts at ``b * len(data) // B`` and wraps around at the end, so the streams
    cover disjoint stretches for the first ``len(data) / B`` bytes.

    Args:
        data: uint8 corpus.
        batch_size: streams B.
        chunk_size: tokens per chunk L.
    """

    def __init__(self, data: np.ndarray, batch_size: int, chunk_size: int = 64) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        if len(data) < chunk_size + 1:
            raise ValueError(
                f"corpus has {len(data)} bytes, need more than chunk_size={chunk_size}"
            )
        self.data = np.asarray(data, dtype=np.uint8)
        self.batch_size, self.chunk_size = batch_size, chunk_size
        self.positions = np.array(
            [b * len(self.data) // batch_size for b in range(batch_size)], dtype=np.int64
        )

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-byte targets, both (B, L) int64; advances every stream by L."""
        n = len(self.data)
        idx = (self.positions[:, None] + np.arange(self.chunk_size + 1)[None, :]) % n  # (B, L+1)
        window = torch.from_numpy(self.data[idx].astype(np.int64))
        self.positions = (self.positions + self.chunk_size) % n
        return window[:, :-1], window[:, 1:]
