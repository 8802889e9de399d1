"""Each package's wheel installs alone (with only the sibling wheels it needs) and imports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on PATH"),
]


def test_six_wheels_six_sdists_each_installs_alone(tmp_path: Path):
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools/check_wheels.py"), "--dist", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for pkg in (
        "core-layers",
        "sequence-models",
        "memory-store",
        "alignment",
        "agents-worldmodel",
        "devtools",
    ):
        assert f"{pkg}: ok" in res.stdout
    assert len(list((tmp_path / "dist").glob("*.whl"))) == 6
    assert len(list((tmp_path / "dist").glob("*.tar.gz"))) == 6
