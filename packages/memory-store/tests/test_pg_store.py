"""PgVectorStore against a real PostgreSQL + pgvector (started by the ``pg_dsn`` fixture)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from seedbed.memory_store import HierarchicalMemory, PgVectorStore, VectorStore


def _data(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("metric", ["dot", "cosine", "l2"])
def test_same_results_as_exact_store(pg_dsn: str, pg_table: str, metric: str) -> None:
    x, q = _data(300), _data(6, seed=1)
    exact = VectorStore(16, metric)
    exact.add(x, ids=np.arange(1, 301))
    with PgVectorStore(pg_dsn, 16, metric, table=pg_table, ef_search=100) as store:
        ids = store.add(x, metadata=[{"i": i, "odd": i % 2} for i in range(300)])
        assert ids.tolist() == list(range(1, 301))
        assert len(store) == 300
        s, i, m = store.search(q, 5)
        s_ref, i_ref, _ = exact.search(q, 5)
        assert np.array_equal(i, i_ref)
        np.testing.assert_allclose(s, s_ref, rtol=1e-4, atol=1e-4)
        assert m[0][0]["i"] == i[0, 0] - 1
        _, i, m = store.search(q, 4, filter={"odd": 1})
        assert all(row["odd"] == 1 for r in m for row in r)
        vecs, meta = store.get([1, 5])
        np.testing.assert_allclose(vecs, exact.get([1, 5])[0], rtol=1e-6)
        assert meta == [{"i": 0, "odd": 0}, {"i": 4, "odd": 0}]
        assert store.delete([1, 2, 999]) == 2
        assert len(store) == 298
        store.drop_table()


def test_async_api_and_snapshot(pg_dsn: str, pg_table: str, tmp_path: Path) -> None:
    async def main() -> None:
        store = PgVectorStore(pg_dsn, 8, "l2", table=pg_table)
        ids = await store.aadd(
            np.eye(8), ids=np.arange(10, 18), metadata=[{"k": i} for i in range(8)]
        )
        assert ids.tolist() == list(range(10, 18))
        _, got, _ = await store.asearch(np.eye(8)[3], 1)
        assert got.tolist() == [[13]]
        assert await store.alen() == 8
        assert await store.adelete([10]) == 1
        await store.asave(tmp_path / "snap.npz")
        await store.aclose()

    asyncio.run(main())
    snap = VectorStore.load(tmp_path / "snap.npz")  # the export is a VectorStore file
    assert sorted(snap.ids.tolist()) == list(range(11, 18))
    restored = PgVectorStore.load(tmp_path / "snap.npz", pg_dsn, table=pg_table + "_r")
    assert len(restored) == 7
    assert restored.search(np.eye(8)[5], 1)[1].tolist() == [[15]]
    restored.drop_table()
    restored.close()


def test_bad_input_and_identifiers(pg_dsn: str, pg_table: str) -> None:
    with pytest.raises(ValueError, match="table"):
        PgVectorStore(pg_dsn, 4, table='x"; DROP TABLE pg_class; --')
    with pytest.raises(ValueError, match="metric"):
        PgVectorStore(pg_dsn, 4, "manhattan", table=pg_table)
    store = PgVectorStore(pg_dsn, 4, "dot", table=pg_table)
    store.add(np.eye(4), metadata=[{"a": i} for i in range(4)])
    before = store.get([1, 2, 3, 4])
    bad = [  # (call, expected message)
        (lambda: store.add(np.ones((1, 5))), "shape"),
        (lambda: store.add(np.full((1, 4), np.nan)), "finite"),
        (lambda: store.add(np.full((1, 4), np.inf)), "finite"),
        (lambda: store.add(np.ones((2, 4)), ids=[7]), "one entry per vector"),
        (lambda: store.add(np.ones((2, 4)), metadata=[{}]), "one entry per vector"),
        (
            lambda: store.add(np.ones((2, 4)), ids=[50, 2]),
            "already in table",
        ),  # whole batch rolled back
        (lambda: store.search(np.ones(4), 0), "k must be"),
        (lambda: store.search(np.ones(3), 1), "shape"),
        (lambda: store.search(np.ones(4), 1, filter=lambda m: True), "dicts"),
    ]
    for call, message in bad:
        with pytest.raises(ValueError, match=message):
            call()
    assert len(store) == 4
    after = store.get([1, 2, 3, 4])
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1] == after[1]
    with pytest.raises(ValueError, match="dim"):  # the table holds 4-d vectors
        PgVectorStore(pg_dsn, 6, table=pg_table)
    store.drop_table()
    store.close()


_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from seedbed.memory_store import HierarchicalMemory, PgVectorStore

    dsn, table, node, seed, n, batch, kill_batch = sys.argv[1:]
    n, batch, kill_batch = int(n), int(batch), int(kill_batch)
    remote = PgVectorStore(dsn, 16, "l2", table=table)
    mem = HierarchicalMemory(16, metric="l2", hot_capacity=25, remote=remote, node_id=node)
    x = np.random.default_rng(int(seed)).standard_normal((n, 16)).astype(np.float32)
    mem.add(x, metadata=[{"j": j} for j in range(n)])
    if kill_batch >= 0:  # stop inside batch `kill_batch`: rows inserted, not committed
        orig, calls = PgVectorStore._insert, [0]

        async def insert(self, conn, *args):
            out = await orig(self, conn, *args)
            if calls[0] == kill_batch:
                print("INSERTED-NOT-COMMITTED", flush=True)
                time.sleep(120)  # SIGKILL arrives here
            calls[0] += 1
            return out

        PgVectorStore._insert = insert
    pushed = mem.push_remote(batch_size=batch)
    print("PUSHED", len(pushed), flush=True)
    """
)

_READER = textwrap.dedent(
    """
    import sys, json
    import numpy as np
    from seedbed.memory_store import HierarchicalMemory, PgVectorStore

    dsn, table, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    remote = PgVectorStore(dsn, 16, "l2", table=table, ef_search=200)
    mem = HierarchicalMemory(16, metric="l2", remote=remote)
    out = {"count": len(remote), "found": {}}
    for node, seed, n in spec:
        x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
        res = mem.query_remote(x, 1)
        hits = [j for j in range(n) if res.metadata[j][0] and res.metadata[j][0]["node"] == node
                and res.metadata[j][0]["local_id"] == j and float(res.scores[j, 0]) < 1e-6]
        out["found"][node] = hits
    print(json.dumps(out), flush=True)
    """
)


def _py(code: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_processes_share_one_memory_and_a_killed_writer_loses_only_its_open_batch(
    pg_dsn: str, pg_table: str
) -> None:
    # Two writers push concurrently through HierarchicalMemory.push_remote().
    writers = [
        _py(_WRITER, pg_dsn, pg_table, node, seed, 120, 50, -1)
        for node, seed in (("A", 1), ("B", 2))
    ]
    for w in writers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
        assert "PUSHED 120" in out
    # A third writer is killed (SIGKILL) inside its second batch, before that batch commits.
    victim = _py(_WRITER, pg_dsn, pg_table, "C", 3, 100, 40, 1)
    assert victim.stdout is not None
    line = victim.stdout.readline()
    assert line.strip() == "INSERTED-NOT-COMMITTED", victim.stderr.read() if victim.stderr else ""
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    # A reader process sees everything committed, through query_remote().
    reader = _py(
        _READER, pg_dsn, pg_table, json.dumps([["A", 1, 120], ["B", 2, 120], ["C", 3, 100]])
    )
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    assert got["found"]["A"] == list(range(120))
    assert got["found"]["B"] == list(range(120))
    assert got["found"]["C"] == list(range(40))  # the committed first batch, nothing of the second
    assert got["count"] == 120 + 120 + 40
    PgVectorStore(pg_dsn, 16, "l2", table=pg_table).drop_table()


def test_push_remote_marks_only_committed_and_query_remote_device(
    pg_dsn: str, pg_table: str
) -> None:
    remote = PgVectorStore(pg_dsn, 8, "dot", table=pg_table)
    mem = HierarchicalMemory(8, hot_capacity=5, remote=remote, node_id="n1")
    mem.add(np.eye(8), metadata=[{"x": i} for i in range(8)])
    assert len(mem.push_remote(batch_size=3)) == 8
    assert len(remote) == 8
    assert len(mem.push_remote()) == 0  # nothing new
    mem.add(np.ones((1, 8)))
    assert len(mem.push_remote()) == 1
    res = mem.query_remote(torch.eye(8, dtype=torch.float64)[2:3], 1)
    assert res.metadata[0][0] == {"x": 2, "node": "n1", "local_id": 2}
    assert res.vectors.dtype == torch.float64
    assert res.vectors.shape == (1, 1, 8)
    torch.testing.assert_close(res.vectors[0, 0], torch.eye(8, dtype=torch.float64)[2])
    with pytest.raises(ValueError, match="remote"):
        HierarchicalMemory(8).push_remote()
    with pytest.raises(ValueError, match="dim"):
        HierarchicalMemory(4, remote=remote).query_remote(np.ones(4), 1)
    remote.drop_table()
    remote.close()
