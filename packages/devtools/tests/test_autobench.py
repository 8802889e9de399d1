"""AutoBench: passing, failing, hanging, crashing and erroring modules give the right scoreboard.

The fixture modules are generated into ``tmp_path`` at test time, so that the main pytest run
never collects them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from seedbed.devtools.autobench import (
    ModuleResult,
    discover_modules,
    main,
    merge_junit,
    run_autobench,
    run_module,
    summarize_results,
)

TIMEOUT = 5.0
# fixture processes skip entry-point plugins (hypothesis, xdist, ...): a lean, fast start
LEAN = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}

MODULES = {
    "test_passing.py": """
        import pytest

        def test_one():
            assert 1 + 1 == 2

        def test_two():
            assert "a".upper() == "A"

        @pytest.mark.parametrize("x", [1, 2])
        def test_param(x):
            assert x > 0

        @pytest.mark.skip(reason="not today")
        def test_skipped():
            raise AssertionError
        """,
    "test_failing.py": """
        def test_ok():
            assert True

        def test_bad():
            assert 2 + 2 == 5, "arithmetic is broken"

        def test_raises():
            raise KeyError("missing")
        """,
    "test_hanging.py": """
        import os, subprocess, sys, time

        def test_hang():
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            with open(os.environ["AUTOBENCH_PIDFILE"], "w") as f:
                f.write(str(child.pid))
            time.sleep(120)
        """,
    "test_segfault.py": """
        import ctypes

        def test_before():
            assert True

        def test_crash():
            ctypes.string_at(0)
        """,
    "test_exiting.py": """
        import os

        def test_exit():
            os._exit(3)
        """,
    "test_erroring.py": """
        import json

        raise RuntimeError("this module cannot be imported")

        def test_never():
            pass
        """,
    "helper_module.py": """
        raise AssertionError("never collected")
        """,
}

# module -> (status, passed, failed, errors, skipped)
EXPECTED = {
    "test_erroring.py": ("error", 0, 0, 1, 0),
    "test_exiting.py": ("crashed", 0, 0, 1, 0),
    "test_failing.py": ("failed", 1, 2, 0, 0),
    "test_hanging.py": ("timeout", 0, 0, 1, 0),
    "test_passing.py": ("passed", 4, 0, 0, 1),
    "test_segfault.py": ("crashed", 0, 0, 1, 0),
}


def _write(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_text(textwrap.dedent(MODULES[name]))
    return root


@pytest.fixture
def suite(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOBENCH_PIDFILE", str(tmp_path / "grandchild.pid"))
    return _write(tmp_path / "suite", list(MODULES))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state where /proc exists
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False
    return True


def test_discover_modules(suite):
    names = [p.name for p in discover_modules(suite)]
    assert names == sorted(EXPECTED)
    assert discover_modules(suite / "test_passing.py") == [suite / "test_passing.py"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_modules(suite / "nope")


def test_scoreboard_is_exactly_right(suite, tmp_path):
    t0 = time.perf_counter()
    results = run_autobench(suite, jobs=3, timeout=TIMEOUT, env=LEAN)
    wall = time.perf_counter() - t0
    got = {r.module: (r.status, r.passed, r.failed, r.errors, r.skipped) for r in results}
    assert got == EXPECTED
    by = {r.module: r for r in results}
    assert "SIGSEGV" in by["test_segfault.py"].detail
    assert "code 3" in by["test_exiting.py"].detail
    assert "this module cannot be imported" in by["test_erroring.py"].output
    assert "arithmetic is broken" in by["test_failing.py"].output
    # the hang was killed at the timeout (it would sleep 120 s), grandchild included
    assert TIMEOUT <= by["test_hanging.py"].seconds < TIMEOUT + 10
    assert wall < TIMEOUT + 20
    pid = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)

    board = summarize_results(results)
    lines = board.splitlines()
    assert lines[0].split() == ["module", "status", "pass", "fail", "error", "skip", "time"]
    row = next(ln for ln in lines if ln.startswith("test_failing.py"))
    assert row.split()[1:6] == ["FAILED", "1", "2", "0", "0"]
    assert "==== test_failing.py: failed" in board
    assert "==== test_passing.py" not in board  # only failing modules show their output
    assert "6 modules: 1 ok, 5 not ok" in board

    merged = ET.fromstring(merge_junit(results))
    suites = {s.get("name"): s for s in merged.iter("testsuite")}
    assert set(suites) == set(EXPECTED)
    assert suites["test_failing.py"].get("failures") == "2"
    assert suites["test_hanging.py"].get("errors") == "1"
    assert merged.get("tests") == str(sum(len(list(s.iter("testcase"))) for s in suites.values()))


def test_run_module_alone_and_validation(tmp_path):
    root = _write(tmp_path, ["test_passing.py"])
    r = run_module(root / "test_passing.py", timeout=60, env=LEAN)
    assert (r.status, r.passed, r.skipped, r.ok) == ("passed", 4, 1, True)
    assert r.junit is not None
    assert "<testcase" in r.junit
    with pytest.raises(ValueError, match="timeout must be > 0"):
        run_module(root / "test_passing.py", timeout=0)
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        run_autobench(root, jobs=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no test modules"):
        run_autobench(empty)


def test_summary_of_ok_results_shows_no_output():
    r = ModuleResult("test_x.py", "passed", passed=2, seconds=0.5, output="noise")
    board = summarize_results([r])
    assert "noise" not in board
    assert "1 modules: 1 ok, 0 not ok" in board


def test_cli_exit_codes_and_junit(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    good = _write(tmp_path / "good", ["test_passing.py"])
    bad = _write(tmp_path / "bad", ["test_passing.py", "test_failing.py"])
    env = {**os.environ, "PYTHONWARNINGS": "error::RuntimeWarning", **LEAN}
    cmd = [sys.executable, "-m", "seedbed.devtools.autobench", "--no-progress"]
    ok = subprocess.run([*cmd, str(good)], capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "test_passing.py" in ok.stdout
    assert "RuntimeWarning" not in ok.stderr
    report = tmp_path / "merged.xml"
    code = main([str(bad), "-j", "2", "--timeout", "60", "--junit", str(report), "--no-progress"])
    assert code == 1
    merged = ET.parse(report).getroot()
    assert merged.get("failures") == "2"
    assert merged.get("tests") == "8"
    assert main([str(tmp_path / "missing"), "--no-progress"]) == 2


def test_extra_pytest_args_are_passed(tmp_path):
    root = _write(tmp_path, ["test_failing.py"])
    (r,) = run_autobench(root, pytest_args=["-k", "test_ok"], env=LEAN)
    assert (r.status, r.passed, r.failed) == ("passed", 1, 0)
