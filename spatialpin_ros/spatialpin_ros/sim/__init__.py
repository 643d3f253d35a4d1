"""The embedded simulated world (PyBullet): scene files, random tabletops, the configured arm and an
RGB-D camera. ROS-free; ``spatialpin_ros.ros.sim_node`` wraps it as a node."""

from spatialpin_ros.sim.scene_spec import (CameraSpec, ObjectSpec, SceneSpec, load_scene_file,
                                           parse_scene, random_scene)

__all__ = ["CameraSpec", "ObjectSpec", "SceneSpec", "load_scene_file", "parse_scene",
           "random_scene"]
