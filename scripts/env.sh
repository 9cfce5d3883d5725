# Source me: the environment in which the built package, rclpy and the nodes run.
# Every DDS participant of this project stays on loopback (no multicast to the network) and on a
# domain of its own run unless the caller already chose one.
_etuner_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_etuner_venv=${ETUNER_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/etuner_ros/venv}
export PATH="$_etuner_venv/bin:$PATH"
export AMENT_PREFIX_PATH="$_etuner_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# colcon's setup scripts read unset variables: source them without nounset, then restore it.
case $- in *u*) _etuner_nounset=1; set +u ;; *) _etuner_nounset= ;; esac
# shellcheck disable=SC1091
. "$_etuner_root/install/local_setup.bash"
[ -n "$_etuner_nounset" ] && set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Fast DDS transport settings that let 640x480+ camera frames through best effort (see the XML);
# a profile the user chose (either variable) wins.
if [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}" ] && [ -z "${FASTDDS_DEFAULT_PROFILES_FILE:-}" ]; then
  export FASTRTPS_DEFAULT_PROFILES_FILE="$_etuner_root/config/fastdds.xml"
fi
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( ($$ % 100) + 100 ))}
export PYTHONUNBUFFERED=1
# Same float kernels on every x86-64 machine (etuner_ros/core/numerics.py), so a benchmark seed,
# and the starting models the demo and tests cache for it, reproduce anywhere; a caller's own
# value wins.
if [ "$(uname -m)" = x86_64 ]; then
  export ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-avx2}
  export ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX2}
  export MKL_CBWR=${MKL_CBWR:-AVX2}
fi
unset _etuner_root _etuner_venv _etuner_nounset
