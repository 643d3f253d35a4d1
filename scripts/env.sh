# Source this file (". scripts/env.sh") for a shell in which the nodes, the `spatialpin` command
# and the tests run: the virtual environment plus the colcon workspace.
_SP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_SP_VENV="${SPATIALPIN_VENV:-$_SP_ROOT/.venv}"
# shellcheck disable=SC1091
. "$_SP_VENV/bin/activate"
if [ "$(cat "$_SP_VENV/.spatialpin-mode" 2>/dev/null)" = pypi ]; then
  export AMENT_PREFIX_PATH="$_SP_VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$_SP_VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
fi
# shellcheck disable=SC1091
[ -f "$_SP_ROOT/install/setup.bash" ] && . "$_SP_ROOT/install/setup.bash"
# Keep DDS discovery on this machine unless the user chose otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
unset _SP_ROOT _SP_VENV
# The package's executables (spatialpin, sim_node, ...) live in lib/spatialpin_ros, as ROS installs
# them; put them on PATH for this shell.
_SP_LIB="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)/install/spatialpin_ros/lib/spatialpin_ros"
[ -d "$_SP_LIB" ] && export PATH="$_SP_LIB:$PATH"
unset _SP_LIB
# Fast DDS: a shared-memory segment large enough for camera images (unless the user chose a profile).
_SP_XML="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)/spatialpin_ros/config/fastdds.xml"
[ -z "${FASTDDS_DEFAULT_PROFILES_FILE:-}" ] && export FASTDDS_DEFAULT_PROFILES_FILE="$_SP_XML"
unset _SP_XML
