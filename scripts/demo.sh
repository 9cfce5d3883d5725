#!/usr/bin/env bash
# The main job: build everything, then run the real nodes on the simulated camera and caregiver,
# printing progress and a summary (also written as JSON under data/runs/<time>/summary.json).
# Usage: bash scripts/demo.sh [demo options, e.g. --policy immediate]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
echo "[demo] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"
exec "$ROOT/install/etuner_ros/lib/etuner_ros/demo" --data-dir "$ROOT/data" "$@"
