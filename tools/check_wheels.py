#!/usr/bin/env python3
"""Build every package and check that each wheel installs alone and imports.

For each package: a fresh venv (uv venv), `pip install` of that wheel plus only the sibling
wheels it depends on (third-party dependencies come from the package index, or from uv's
cache), then `import seedbed.<pkg>`. Also checks that the build gives exactly six wheels and six
sdists.

Usage: python tools/check_wheels.py [--dist DIR] [--skip-build] [--only PKG ...]
Exit status 0 when every check passes; one line per failure otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# package dir -> sibling package dirs it needs at install time (DESIGN.md layering)
SIBLINGS: dict[str, list[str]] = {
    "core-layers": [],
    "sequence-models": ["core-layers"],
    "memory-store": ["core-layers", "sequence-models"],
    "alignment": ["core-layers", "sequence-models"],
    "agents-worldmodel": ["core-layers", "sequence-models", "memory-store"],
    "devtools": [],
}


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def build(dist: Path) -> list[str]:
    """`uv build --all-packages` into ``dist``; returns failure messages."""
    if dist.exists():
        shutil.rmtree(dist)
    res = _run(["uv", "build", "--all-packages", "--out-dir", str(dist)], cwd=ROOT)
    if res.returncode != 0:
        return [f"uv build failed: {res.stderr.strip().splitlines()[-1:]}"]
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    errors = []
    if len(wheels) != len(SIBLINGS) or len(sdists) != len(SIBLINGS):
        errors.append(
            f"expected {len(SIBLINGS)} wheels and sdists, got {len(wheels)} and {len(sdists)}"
        )
    return errors


def _wheel(dist: Path, pkg: str) -> Path:
    name = "seedbed_" + pkg.replace("-", "_")
    found = sorted(dist.glob(f"{name}-*.whl"))
    if not found:
        raise FileNotFoundError(f"no wheel for {pkg} in {dist}")
    return found[-1]


def check_one(dist: Path, pkg: str) -> str | None:
    """Install ``pkg``'s wheel with only its sibling wheels into a fresh venv and import it."""
    with tempfile.TemporaryDirectory(prefix=f"wheel-{pkg}-") as tmp:
        venv = Path(tmp) / "venv"
        res = _run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)])
        if res.returncode != 0:
            return f"{pkg}: uv venv failed: {res.stderr.strip()}"
        py = venv / "bin" / "python"
        wheels = [str(_wheel(dist, p)) for p in [*SIBLINGS[pkg], pkg]]
        res = _run(["uv", "pip", "install", "--quiet", "--python", str(py), *wheels])
        if res.returncode != 0:
            return f"{pkg}: install failed: {res.stderr.strip()[-400:]}"
        mod = "seedbed." + pkg.replace("-", "_")
        res = _run([str(py), "-c", f"import {mod}, sys; print({mod}.__version__)"])
        if res.returncode != 0:
            return f"{pkg}: import {mod} failed: {res.stderr.strip()[-400:]}"
        # the wheel must not have dragged in a sibling it does not declare
        listed = _run(["uv", "pip", "list", "--python", str(py)]).stdout
        present = {p for p in SIBLINGS if f"seedbed-{p} " in listed}
        extra = present - {pkg, *SIBLINGS[pkg]}
        if extra:
            return f"{pkg}: unexpected sibling packages installed: {sorted(extra)}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", type=Path, default=ROOT / "dist")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--only", nargs="*", default=list(SIBLINGS), choices=list(SIBLINGS))
    args = ap.parse_args(argv)
    errors = [] if args.skip_build else build(args.dist)
    for pkg in args.only:
        err = check_one(args.dist, pkg)
        print(f"{pkg}: {'ok' if err is None else 'FAIL'}")
        if err:
            errors.append(err)
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
