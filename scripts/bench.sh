#!/usr/bin/env bash
# Build everything, then run the benchmark: the synthetic home and the sklearn-digits real-image
# stream through every tuning policy plus the hindsight reference, on the test seeds (mean +- sd),
# on a deterministic stream clock; prints a table per stream, writes bench/results.json and
# bench/benchmark.png. Usage: bash scripts/bench.sh [--seed N | --dev] [--stream NAME|PATH]
# [--policies ...] [--quick] (python -m etuner_ros.bench --help lists every option)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
# -P: the installed package, not the source tree, even when run from the checkout; no cd, so a
# relative --stream DIR or --out names a path from where the command was typed.
exec python -P -m etuner_ros.bench --out "$ROOT/bench" --data-dir "$ROOT/data" "$@"
