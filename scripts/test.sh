#!/usr/bin/env bash
# Build everything, then run every test: core unit tests (no ROS) and integration tests that
# start the real nodes over real DDS (loopback only, a domain of this run's own).
# A skipped test fails the run: ROS is always present here, so a skip could only hide a defect.
# Usage: bash scripts/test.sh [pytest options]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
export ETUNER_FAIL_ON_SKIP=1
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"
echo "[test] ruff"
ruff check "$ROOT"
# The `pytest` executable (not `python -m`) keeps the source tree off sys.path, so the tests
# import the colcon-installed package.
cd "$ROOT"
exec pytest -ra --timeout=600 "$ROOT/test" "$@"
