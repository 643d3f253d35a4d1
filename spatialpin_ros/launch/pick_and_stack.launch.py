"""The simulated arm perceives, proposes, plans and stacks:

    ros2 launch spatialpin_ros pick_and_stack.launch.py seed:=3 rviz:=true

Nodes: sim, perception, spatial_qa (questions and task proposals), manipulation (the
/spatialpin/execute_task action). Without `ros2 launch`: `spatialpin bringup pick_and_stack`;
the headless demo with a report: `spatialpin demo` (`make demo`).
`respawn:=true` (and `respawn_delay:=S`) restarts a node that exits, as with `spatialpin bringup`.
"""

from spatialpin_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("pick_and_stack", rviz=True)
