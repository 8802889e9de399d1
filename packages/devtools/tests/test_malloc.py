"""keep_freed_memory: after it, a freed 8 MiB block is reused without page faults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from seedbed.devtools import malloc

glibc = pytest.mark.skipif(
    sys.platform != "linux" or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc only"
)

# Allocates, touches and frees an 8 MiB block, then allocates and touches one again, and
# prints the page faults of that second touch. Run in a fresh process: the settings are
# process-wide and glibc adjusts its thresholds from the process's history.
_SCRIPT = """
import ctypes, ctypes.util, resource, sys
from seedbed.devtools.malloc import keep_freed_memory
if sys.argv[1] == "keep":
    print(keep_freed_memory(), file=sys.stderr)
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 8 << 20
def touch():
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    return p
libc.free(touch())
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
p = touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
libc.free(p)
"""


def _faults(mode: str) -> int:
    res = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    return int(res.stdout.strip())


@glibc
def test_freed_block_is_reused_without_page_faults():
    pages = (8 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert _faults("default") > pages // 2  # glibc maps a fresh block the second time too
    assert _faults("keep") < pages // 20


@glibc
def test_description_names_the_thresholds():
    res = subprocess.run(
        [sys.executable, "-c", "from seedbed.devtools.malloc import keep_freed_memory as k; print(k())"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "mmap threshold 32 MiB" in res.stdout
    assert "trim threshold 1 GiB" in res.stdout


class _FakeLibc:
    """A C library whose ``mallopt`` answers ``result`` (glibc's answers 1 on success)."""

    def __init__(self, result: int) -> None:
        self.calls: list[tuple[int, int]] = []

        def mallopt(param: int, value: int) -> int:  # a function: ctypes sets argtypes on it
            self.calls.append((param, value))
            return result

        def gnu_get_libc_version() -> bytes:
            return b"2.99"

        self.mallopt, self.gnu_get_libc_version = mallopt, gnu_get_libc_version


def test_not_glibc_is_left_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    class Musl:  # no gnu_get_libc_version, as on musl or macOS
        mallopt = staticmethod(lambda param, value: 0)

    monkeypatch.setattr(malloc.ctypes, "CDLL", lambda name: Musl())
    assert malloc.keep_freed_memory() == "system malloc (not glibc: left as is)"


def test_refused_thresholds_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeLibc(result=0)
    monkeypatch.setattr(malloc.ctypes, "CDLL", lambda name: fake)
    assert (
        malloc.keep_freed_memory()
        == "glibc 2.99 malloc (mallopt refused both thresholds: left as is)"
    )
    assert fake.calls == [(-3, 32 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
