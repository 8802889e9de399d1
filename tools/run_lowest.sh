#!/usr/bin/env bash
# Run the tests with every direct dependency at its lowest allowed version, in the venv given as
# $1 (tox's `lowest` env passes its own), leaving the committed uv.lock exactly as it was:
# `uv sync --resolution lowest-direct` would otherwise rewrite it in place.
# Usage: tools/run_lowest.sh VENV [PYTEST_ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
venv=${1:?usage: tools/run_lowest.sh VENV [PYTEST_ARGS...]}
shift
backup=$(mktemp)
cp uv.lock "$backup"
trap 'cp "$backup" uv.lock; rm -f "$backup"' EXIT
export UV_PROJECT_ENVIRONMENT="$venv"
uv sync --quiet --all-packages --resolution lowest-direct --group dev --group oracles --group test || exit 1
if [ $# -eq 0 ]; then set -- packages; fi
uv run --no-sync pytest "$@"
