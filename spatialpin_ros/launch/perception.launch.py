"""Perception on your own RGB-D camera (RealSense topic names by default):

    ros2 launch spatialpin_ros perception.launch.py

The camera's optical-frame pose comes from TF (world <- the image's frame_id), or set the
perception node's camera_pose parameter. Without `ros2 launch`: `spatialpin bringup perception`.
"""

from spatialpin_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("perception", rviz=True)
