"""Perception on your own RGB-D camera (realsense-ros 4.x topic names by default):

    ros2 launch spatialpin_ros perception.launch.py
    ros2 launch spatialpin_ros perception.launch.py color_topic:=/camera/color/image_raw \
        depth_topic:=/camera/aligned_depth_to_color/image_raw \
        camera_info_topic:=/camera/color/camera_info          # realsense-ros 3.x

The camera's optical-frame pose comes from TF (world <- the image's frame_id), or set the
perception node's camera_pose parameter; without either, scenes are in the table's gravity frame
(support_plane). Without `ros2 launch`: `spatialpin bringup perception` (the same arguments as
`-p color_topic:=...`).
`respawn:=true` (and `respawn_delay:=S`) restarts a node that exits, as with `spatialpin bringup`.
"""

from spatialpin_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("perception", rviz=True)
