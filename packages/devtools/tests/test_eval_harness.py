"""Tests for seedbed-eval: discovery, selection, error rows, reports and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seedbed.devtools import eval_harness as eh


def _ok(full: bool = False):
    return [
        {
            "name": "speed",
            "value": 3.0 if full else 2.0,
            "unit": "x",
            "target": 1.5,
            "higher_is_better": True,
            "series": [{"x": [1, 2, 4], "y": [1.0, 1.5, 2.0], "xlabel": "L", "ylabel": "x"}],
        },
        {"name": "err", "value": 0.5, "unit": "", "target": 0.1, "higher_is_better": False},
    ]


def _boom(full: bool = False):
    raise RuntimeError("kaboom")


SPECS = [eh.BenchmarkSpec("pkg_a", "ok", _ok), eh.BenchmarkSpec("pkg_b", "boom", _boom)]


def test_discovery_finds_every_package():
    packages = {s.package for s in eh.discover_benchmarks()}
    assert {
        "core_layers",
        "sequence_models",
        "memory_store",
        "alignment",
        "agents_worldmodel",
        "devtools",
    } <= packages


def test_select_glob_and_substring():
    assert [s.name for s in eh.select(SPECS, ["pkg_a:*"])] == ["ok"]
    assert [s.name for s in eh.select(SPECS, ["boom"])] == ["boom"]
    assert len(eh.select(SPECS, [])) == 2


def test_select_unknown_pattern_is_usage_error():
    with pytest.raises(eh.UsageError, match="matches no benchmark"):
        eh.select(SPECS, ["nothing-like-this"])


def test_raising_benchmark_is_an_error_row_and_others_run():
    rows = eh.run_benchmarks(SPECS, progress=False)
    by = {(r.benchmark, r.metric): r for r in rows}
    assert by[("ok", "speed")].status == "pass"
    assert by[("ok", "err")].status == "fail"  # 0.5 > 0.1 with lower-is-better
    assert by[("boom", "-")].status == "error"
    assert "kaboom" in by[("boom", "-")].note


def test_full_flag_reaches_benchmark():
    rows = eh.run_benchmarks(SPECS[:1], full=True, progress=False)
    assert rows[0].value == 3.0


def test_reports_written(tmp_path: Path):
    rows = eh.run_benchmarks(SPECS, progress=False)
    paths = eh.write_reports(rows, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["mode"] == "quick"
    assert len(data["rows"]) == 3
    md = (tmp_path / "results.md").read_text()
    assert "| pkg_a | ok | speed | 2 | x | ≥ 1.5 | PASS |" in md
    pngs = [p for p in paths if p.suffix == ".png"]
    assert len(pngs) == 1
    assert pngs[0].read_bytes()[:4] == b"\x89PNG"
    table = eh.format_table(rows)
    assert "ERROR" in table
    assert "error in pkg_b:boom" in table


def test_strict_exit_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(eh, "discover_benchmarks", lambda: SPECS)
    base = ["--out", str(tmp_path), "--no-progress", "--system-malloc"]  # in-process: no mallopt
    assert eh.main(base) == 0
    assert eh.main([*base, "--strict"]) == 1
    assert eh.main([*base, "--strict", "--only", "pkg_a:ok"]) == 1


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seedbed.devtools.eval_harness", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_unknown_only_is_one_line_exit_2():
    res = _cli("--only", "no-such-benchmark-xyz")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no-such-benchmark-xyz" in lines[0]
    assert "Traceback" not in res.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; use a file as --out")
def test_cli_unwritable_out_dir(tmp_path: Path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    res = _cli("--only", "devtools:*", "--out", str(ro / "x"))
    assert res.returncode == 2
    assert "not a writable directory" in res.stderr


def test_cli_out_is_a_file_exit_2(tmp_path: Path):
    f = tmp_path / "a-file"
    f.write_text("x")
    res = _cli("--only", "devtools:*", "--out", str(f / "sub"))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr


def test_cli_runs_one_benchmark(tmp_path: Path):
    res = _cli("--only", "devtools:harness_discovery", "--out", str(tmp_path), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "packages_registering_benchmarks" in res.stdout
    assert (tmp_path / "results.md").exists()
    allocator = json.loads((tmp_path / "results.json").read_text())["allocator"]
    assert f"Memory allocator: {allocator}." in (tmp_path / "results.md").read_text()
    if sys.platform == "linux" and os.confstr("CS_GNU_LIBC_VERSION"):
        assert "freed memory kept for reuse" in allocator


def test_cli_system_malloc_is_reported(tmp_path: Path):
    res = _cli("--only", "devtools:harness_discovery", "--out", str(tmp_path), "--no-progress",
               "--system-malloc")  # fmt: skip
    assert res.returncode == 0, res.stderr
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["allocator"] == "system malloc (--system-malloc)"
