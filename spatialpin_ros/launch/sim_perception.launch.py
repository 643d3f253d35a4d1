"""The simulated world seen by the perception node:

    ros2 launch spatialpin_ros sim_perception.launch.py seed:=3 rviz:=true

Without `ros2 launch`: `spatialpin bringup sim_perception -p seed:=3`.
`respawn:=true` (and `respawn_delay:=S`) restarts a node that exits, as with `spatialpin bringup`.
"""

from spatialpin_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("sim_perception", rviz=True)
