#!/usr/bin/env bash
# Build everything, then run the benchmark: one labelled stream through every tuning policy in
# one process (same seeds, same starting model); prints a table, writes bench/results.json
# and bench/benchmark.png. Usage: bash scripts/bench.sh [--stream PATH] [other bench options]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT/install"   # import the installed package, not the source tree
exec python -m etuner_ros.bench --out "$ROOT/bench" --data-dir "$ROOT/data" "$@"
