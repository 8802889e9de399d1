"""Public API of seedbed.devtools: lazy exports and `python -m` entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

import seedbed.devtools as devtools
from seedbed.devtools import benchmarks

TOOLS = ["paper_to_code", "autobench", "pull_request_monitor", "pr_conflict_checker"]


def test_every_export_resolves():
    for name in devtools.__all__:
        assert getattr(devtools, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        devtools.nope


@pytest.mark.parametrize("tool", TOOLS)
def test_python_dash_m_help_has_no_runpy_warning(tool):
    proc = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", f"seedbed.devtools.{tool}", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
    assert "RuntimeWarning" not in proc.stderr


def test_benchmarks_are_registered():
    names = [b.__name__ for b in benchmarks.BENCHMARKS]
    assert names == [
        "harness_discovery",
        "qae_vs_monte_carlo",
        "autobench_vs_single_pytest",
        "chinchilla_fit",
        "breakpoint_recovery",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["qae_vs_monte_carlo", "autobench_vs_single_pytest", "chinchilla_fit", "breakpoint_recovery"],
)
def test_quick_benchmarks_meet_their_targets(name):
    metrics = getattr(benchmarks, name)(full=False)
    assert metrics
    for m in metrics:
        if m["target"] is None:
            continue
        ok = m["value"] >= m["target"] if m["higher_is_better"] else m["value"] <= m["target"]
        if m["name"] != "fit_seconds":  # wall time is reported, not asserted
            assert ok, m
