"""Perception, spatial questions, task proposals and planning for a real arm:

    ros2 launch spatialpin_ros manipulation.launch.py

Set the manipulation node's use_follow_joint_trajectory:=true for a ros2_control
joint_trajectory_controller. Camera topics: realsense-ros 4.x by default, else the
color_topic, depth_topic and camera_info_topic arguments. Without `ros2 launch`:
`spatialpin bringup manipulation`.
`respawn:=true` (and `respawn_delay:=S`) restarts a node that exits, as with `spatialpin bringup`.
"""

from spatialpin_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("manipulation", rviz=True)
