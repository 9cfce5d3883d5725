#!/usr/bin/env bash
# Perception latency idle and during tuning rounds, through the real nodes (see
# scripts/latency_bench.py for options). Prints a table, writes bench/out/latency.json.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh" >/dev/null
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
exec python "$ROOT/scripts/latency_bench.py" "$@"
