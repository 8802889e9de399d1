#!/usr/bin/env python3
"""Run one package's tests in the current (tox) environment, with only that package installed.

tox calls ``python tools/tox_package.py {env_name}`` for the ``pkg-<package>-py3XX`` matrix:
the package and the sibling packages below it are installed editable into the env (nothing
else from the workspace), then pytest runs that package's tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from check_wheels import SIBLINGS  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: tox_package.py ENV_NAME [PYTEST_ARGS...]", file=sys.stderr)
        return 2
    env = argv[1]
    pkg = next((p for p in SIBLINGS if env.startswith(f"pkg-{p}-")), None)
    if pkg is None:
        print(
            f"tox_package.py: env {env!r} names no package (known: {list(SIBLINGS)})",
            file=sys.stderr,
        )
        return 2
    editable: list[str] = []
    for p in [*SIBLINGS[pkg], pkg]:
        editable += ["-e", str(ROOT / "packages" / p)]
    subprocess.run(
        ["uv", "pip", "install", "--quiet", "--python", sys.executable, *editable], check=True
    )
    tests = ROOT / "packages" / pkg / "tests"
    return subprocess.call(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(ROOT),
            str(tests),
            *argv[2:],
        ]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
