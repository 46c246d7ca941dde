#!/bin/sh
# Run the atheris harness for a bounded time in a scratch folder (crash files land there).
# Usage: tests/fuzz/run_atheris.sh [seconds]   (default 60)
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
SECONDS_=${1:-60}
WORK=$(mktemp -d)
cd "$WORK"
mkdir corpus
"$PY" "$ROOT/tests/fuzz/atheris_functional.py" corpus -max_total_time="$SECONDS_" \
    -rss_limit_mb=4096 -timeout=20 -print_final_stats=1
echo "corpus and any crash-* files: $WORK"
