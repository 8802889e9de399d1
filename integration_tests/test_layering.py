"""The layering rule of DESIGN.md: imports only go down."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "check_layering", ROOT / "tools/check_layering.py"
    )
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_repository_respects_layering():
    assert _load().violations(ROOT) == []


def test_upward_import_is_caught(tmp_path: Path):
    mod = _load()
    src = tmp_path / "packages/core-layers/src/seedbed/core_layers"
    src.mkdir(parents=True)
    (src / "bad.py").write_text(
        textwrap.dedent("""
        import torch
        from seedbed.sequence_models import x
        from seedbed import memory_store
    """)
    )
    ok = tmp_path / "packages/sequence-models/src/seedbed/sequence_models"
    ok.mkdir(parents=True)
    (ok / "good.py").write_text("from seedbed.core_layers import Metric\n")
    bad = mod.violations(tmp_path)
    assert len(bad) == 2
    assert "imports seedbed.sequence_models" in bad[0]
    assert "imports seedbed.memory_store" in bad[1]
