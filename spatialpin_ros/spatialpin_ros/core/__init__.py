"""Core types and helpers shared by every part of the package (ROS-free)."""

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.types import CameraModel, ObjectPrior, Pose, RGBDFrame, Scene

__all__ = ["CameraModel", "ObjectPrior", "Pose", "RGBDFrame", "Scene", "SpatialPinError"]
