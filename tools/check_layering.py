#!/usr/bin/env python3
"""Fail when a Seedbed module imports a sibling package that is not below it.

The allowed imports follow DESIGN.md's layering. Both ``src/`` and ``tests/`` of every package
are checked, by parsing the source (nothing is imported).

Usage: python tools/check_layering.py [ROOT]   (exit 1 and one line per violation)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

# package -> the sibling packages it may import
ALLOWED: dict[str, set[str]] = {
    "core_layers": set(),
    "sequence_models": {"core_layers"},
    "memory_store": {"core_layers", "sequence_models"},
    "alignment": {"core_layers", "sequence_models"},
    "agents_worldmodel": {"core_layers", "sequence_models", "memory_store"},
    "devtools": set(),
}


def _seedbed_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "seedbed":
                names = [f"seedbed.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "seedbed" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def violations(root: Path) -> list[str]:
    """One message per import that breaks the layering, as ``path:line: message``."""
    out = []
    for pkg_dir in sorted((root / "packages").iterdir()):
        pkg = pkg_dir.name.replace("-", "_")
        if pkg not in ALLOWED:
            if (pkg_dir / "pyproject.toml").exists():
                out.append(f"{pkg_dir}: package {pkg!r} has no entry in ALLOWED")
            continue
        for path in sorted(pkg_dir.rglob("*.py")):
            if any(part in {".venv", ".tox", "build", "dist"} for part in path.parts):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, target in _seedbed_imports(tree):
                if target != pkg and target not in ALLOWED[pkg]:
                    allowed = ", ".join(sorted(ALLOWED[pkg])) or "none"
                    out.append(
                        f"{path}:{line}: {pkg} imports seedbed.{target} "
                        f"(allowed siblings: {allowed})"
                    )
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    bad = violations(root)
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
