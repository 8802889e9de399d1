#!/usr/bin/env bash
# Run the tests with every direct dependency at its lowest allowed version, in the venv given as
# $1 (tox's `lowest` env passes its own). `uv sync --resolution lowest-direct` rewrites uv.lock,
# so it runs in a scratch copy of the working tree: the checkout's uv.lock is never touched,
# even for a moment (other `uv run`s in the checkout would otherwise see the lowest lock).
# Usage: tools/run_lowest.sh VENV [PYTEST_ARGS...]
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv=${1:?usage: tools/run_lowest.sh VENV [PYTEST_ARGS...]}
shift
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tar -C "$root" --exclude=./.venv --exclude=./.tox --exclude=./.git --exclude='__pycache__' \
    -cf - . | tar -C "$scratch" -xf - || exit 2
cd "$scratch" || exit 2
export UV_PROJECT_ENVIRONMENT="$venv"
uv sync --quiet --all-packages --resolution lowest-direct --group dev --group oracles --group test || exit 1
if [ $# -eq 0 ]; then set -- packages; fi
uv run --no-sync pytest "$@"
