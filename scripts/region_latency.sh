#!/usr/bin/env bash
# Perception's latency per frame with 1, 4 and 8 regions through the real node (issue 8; see
# scripts/region_latency.py for options). Prints a table, writes bench/out/region_latency.json.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh" >/dev/null
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
exec python "$ROOT/scripts/region_latency.py" "$@"
