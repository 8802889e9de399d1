from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

from seedbed.memory_store.infinite_context import (
    ChunkStreams,
    load_corpus,
    split_corpus,
    stdlib_corpus,
    stdlib_files,
)


def test_stdlib_corpus_is_the_standard_library_sources() -> None:
    data = stdlib_corpus(50_000)
    assert data.dtype == np.uint8
    assert len(data) == 50_000
    root = Path(sysconfig.get_paths()["stdlib"])
    everything = sorted(
        p for p in root.rglob("*.py") if "site-packages" not in p.relative_to(root).parts
    )
    files = stdlib_files()
    assert sorted(files) == everything  # every .py of the standard library, once
    assert files != everything  # in a fixed shuffled order, not directory order
    head = files[0].read_bytes()[:1000]
    assert bytes(data[: len(head)]) == head
    assert np.array_equal(stdlib_corpus(50_000), data)  # deterministic


def test_load_corpus_file_and_split(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_bytes(b"hello world " * 100)
    data = load_corpus(f, max_bytes=500)
    assert len(data) == 500
    assert bytes(data[:5]) == b"hello"
    train, held = split_corpus(data, 0.2)
    assert len(train) == 400
    assert len(held) == 100
    (tmp_path / "e.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(tmp_path / "e.txt")
    with pytest.raises(ValueError, match="eval_fraction"):
        split_corpus(data, 1.5)


def test_chunk_streams_targets_and_wrap() -> None:
    data = np.arange(100, dtype=np.uint8)
    s = ChunkStreams(data, batch_size=4, chunk_size=8)
    x, y = s.next()
    assert x.shape == y.shape == (4, 8)
    assert x[:, 0].tolist() == [0, 25, 50, 75]  # evenly spread starts
    assert (y[:, :-1] == x[:, 1:]).all()
    assert (y == (x + 1) % 100).all()
    for _ in range(3):
        x, y = s.next()
    assert x[3].tolist() == [(99 + i) % 100 for i in range(8)]  # wraps around
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkStreams(np.zeros(5, np.uint8), 1, 8)
