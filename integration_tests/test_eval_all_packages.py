"""The eval harness over all packages: discovery across packages, and one real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PACKAGES = {
    "core_layers",
    "sequence_models",
    "memory_store",
    "alignment",
    "agents_worldmodel",
    "devtools",
}


def test_every_package_registers_a_benchmark():
    from seedbed.devtools.eval_harness import discover_benchmarks

    specs = discover_benchmarks()
    assert {s.package for s in specs} >= PACKAGES
    assert all(s.name != "<load>" for s in specs), [s.qualname for s in specs if s.name == "<load>"]


def test_seedbed_eval_runs_a_cross_package_selection(tmp_path: Path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "seedbed.devtools.eval_harness",
            "--no-progress",
            "--out",
            str(tmp_path),
            "--only",
            "agents_worldmodel:*",
            "--only",
            "alignment:*",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert {r["package"] for r in rows} == {"agents_worldmodel", "alignment"}
    assert all(r["status"] != "error" for r in rows)
