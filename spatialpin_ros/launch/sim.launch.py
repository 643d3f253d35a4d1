"""The simulated arm, scene and camera: `ros2 launch spatialpin_ros sim.launch.py seed:=3`.

Without `ros2 launch` (ROS 2 from PyPI), the same graph runs with `spatialpin bringup sim`.
`respawn:=true` (and `respawn_delay:=S`) restarts a node that exits, as with `spatialpin bringup`.
"""

from spatialpin_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("sim", rviz=True)
