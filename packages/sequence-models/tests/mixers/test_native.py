"""Building and caching C kernels at first use (``mixers/_native.py``)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from seedbed.sequence_models.mixers import _native

pytestmark = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("cc", "gcc", "clang")), reason="no C compiler here"
)

SOURCE = "long add_value(long a) { return a + VALUE; }\n"


@pytest.fixture
def fresh(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_native, "_loaded", {})
    monkeypatch.setenv("SEEDBED_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SEEDBED_NATIVE", raising=False)
    return tmp_path


def test_builds_once_per_source_and_defines(fresh, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    src = fresh / "add.c"
    src.write_text(SOURCE)
    lib = _native.load_c_library(src, {"VALUE": "3"})
    assert lib.add_value(4) == 7
    assert _native.load_c_library(src, {"VALUE": "3"}) is lib  # remembered in the process
    assert _native.load_c_library(src, {"VALUE": "5"}).add_value(4) == 9
    built = sorted(p.name for p in _native.native_cache_dir().glob("*.so"))
    assert len(built) == 2
    assert all(p.startswith("add-") for p in built)
    # a new process (empty memory) reuses the files on disk: no compiler is run again
    monkeypatch.setattr(_native, "_loaded", {})
    calls = []
    real_run = subprocess.run

    def counting_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(_native.subprocess, "run", counting_run)
    assert _native.load_c_library(src, {"VALUE": "3"}).add_value(1) == 4
    assert not calls
    # in a new process, an edit to the source is a new build
    src.write_text(SOURCE.replace("a +", "a * 2 +"))
    monkeypatch.setattr(_native, "_loaded", {})
    assert _native.load_c_library(src, {"VALUE": "3"}).add_value(4) == 11
    assert len(calls) == 1


def test_a_failed_build_says_why_and_leaves_no_file(fresh) -> None:  # type: ignore[no-untyped-def]
    src = fresh / "bad.c"
    src.write_text("this is not C\n")
    with pytest.raises(_native.NativeUnavailable, match=r"could not build bad\.c.*error"):
        _native.load_c_library(src)
    with pytest.raises(_native.NativeUnavailable):  # the failure is remembered
        _native.load_c_library(src)
    assert not list(_native.native_cache_dir().glob("*.so"))


def test_disabled_and_missing_compiler(fresh, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    src = fresh / "add.c"
    src.write_text(SOURCE)
    monkeypatch.setenv("SEEDBED_NATIVE", "0")
    with pytest.raises(_native.NativeUnavailable, match="disabled by SEEDBED_NATIVE=0"):
        _native.load_c_library(src, {"VALUE": "1"})
    monkeypatch.setattr(_native, "_loaded", {})
    monkeypatch.delenv("SEEDBED_NATIVE")
    monkeypatch.setenv("CC", "")
    monkeypatch.setattr(_native.shutil, "which", lambda name: None)
    with pytest.raises(_native.NativeUnavailable, match="no C compiler found"):
        _native.load_c_library(src, {"VALUE": "1"})
